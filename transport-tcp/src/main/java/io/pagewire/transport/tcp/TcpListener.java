package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.kit.stream.StreamListener;
import io.pagewire.transport.spi.kit.stream.TlsLayer;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.Hello;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLException;
import java.io.IOException;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/** Accepts TCP sources: the kit's stream listener with TCP's socket tuning. */
final class TcpListener extends StreamListener<Void> {
    private static final System.Logger LOG = System.getLogger(TcpListener.class.getName());
    private final TcpOptions options;
    /** {@code tls=on}: every accepted socket runs a TLS handshake first; null: off. */
    private final SSLContext tls;

    TcpListener(TransportContext context, NativeSocket server, String uri, TcpOptions options, SSLContext tls) {
        super(context, server, uri, "tcp", options.handshakeTimeoutMs());
        this.options = options;
        this.tls = tls;
    }

    @Override
    protected void secure(NativeSocket s, long deadlineNs) throws IOException {
        if (tls == null) {
            return;
        }
        String peer = peerName(s);
        try {
            TlsLayer.server(s, tls, peer, deadlineNs);
        } catch (TlsLayer.NotTlsException e) {
            LOG.log(System.Logger.Level.WARNING, "refused: source " + peer + ": " + e.getMessage());
            throw new TransportException(TransportException.Kind.HANDSHAKE, "this destination takes only TLS sources: add tls=on and"
                    + " certificates of its CA to the source's URI", e);
        } catch (SSLException e) {
            LOG.log(System.Logger.Level.WARNING, "refused: source " + peer + ": TLS handshake failed: " + e.getMessage());
            // Sent in clear after the TLS alert that told a TLS source why (it reads no further).
            throw new TransportException(TransportException.Kind.HANDSHAKE, "TLS handshake failed: this destination takes only"
                    + " TLS sources (tls=on) with a certificate of its CA", e);
        }
    }

    private int peerTimeoutMs() {
        return (int) TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
    }

    @Override
    protected void tuneUrgent(NativeSocket s, Hello hello) throws IOException {
        if (hello.sharedChannel()) {
            TcpTransportProvider.tuneShared(s, options, peerTimeoutMs());
        } else {
            TcpTransportProvider.tuneUrgent(s, options, peerTimeoutMs());
        }
    }

    @Override
    protected void tuneBackground(NativeSocket s, Hello hello) throws IOException {
        TcpTransportProvider.tuneBackground(s, options, peerTimeoutMs());
    }

    @Override
    protected Set<Capability> capabilities(Hello h) {
        return TcpTransportProvider.capabilities(h.channels(), h.dataDigest(), options.urgentDscp() >= 0, h.sharedChannel(), options.tls());
    }

    @Override
    protected int backgroundNice() {
        return options.backgroundNice();
    }
}
