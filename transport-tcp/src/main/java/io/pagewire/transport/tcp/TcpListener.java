package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.kit.stream.StreamListener;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.Hello;

import java.io.IOException;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/** Accepts TCP sources: the kit's stream listener with TCP's socket tuning. */
final class TcpListener extends StreamListener<Void> {
    private final TcpOptions options;

    TcpListener(TransportContext context, NativeSocket server, String uri, TcpOptions options) {
        super(context, server, uri, "tcp", options.handshakeTimeoutMs());
        this.options = options;
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
        return TcpTransportProvider.capabilities(h.channels(), h.dataDigest(), options.urgentDscp() >= 0, h.sharedChannel());
    }

    @Override
    protected int backgroundNice() {
        return options.backgroundNice();
    }
}
