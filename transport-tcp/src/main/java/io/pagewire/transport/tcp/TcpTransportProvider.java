package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportProvider;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.Authentication;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.stream.StreamConnection;
import io.pagewire.transport.spi.kit.stream.StreamHandshake;
import io.pagewire.transport.spi.kit.stream.TlsLayer;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.Hello;

import javax.net.ssl.SSLContext;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * {@code tcp://host:port?channels=N&data-digest=true|false&...}: the TCP transport. See
 * {@code docs/uri-reference.md} for every option.
 */
public final class TcpTransportProvider implements TransportProvider {
    @Override
    public String scheme() {
        return "tcp";
    }

    @Override
    public Map<String, String> options() {
        return TcpOptions.DESCRIPTIONS;
    }

    @Override
    public Set<Capability> capabilities() {
        return EnumSet.of(Capability.ZERO_COPY_SEND, Capability.ZERO_COPY_RECEIVE, Capability.MULTI_STREAM,
                Capability.SEPARATE_URGENT_PATH, Capability.DATA_DIGEST, Capability.TRAFFIC_CLASS_MARKING);
    }

    /** @return the capabilities of one connection with these settings */
    static Set<Capability> capabilities(int channels, boolean dataDigest, boolean marked, boolean sharedChannel, boolean tls) {
        EnumSet<Capability> c = EnumSet.noneOf(Capability.class);
        if (dataDigest) {
            c.add(Capability.DATA_DIGEST);
        }
        if (!tls) { // TLS copies every byte through its records both ways (no kTLS)
            c.add(Capability.ZERO_COPY_RECEIVE);
            if (!dataDigest) {
                c.add(Capability.ZERO_COPY_SEND);
            }
        }
        if (channels > 1) {
            c.add(Capability.MULTI_STREAM);
        }
        if (!sharedChannel) {
            // A shared channel has neither: its urgent frames queue behind bulk data, and marking
            // them would mark the bulk stream too.
            c.add(Capability.SEPARATE_URGENT_PATH);
            if (marked) {
                c.add(Capability.TRAFFIC_CLASS_MARKING);
            }
        }
        return Set.copyOf(c);
    }

    /**
     * @return the TLS context of a {@code tls=on} URI (from its certificates), or null when TLS is off
     * @throws TransportException {@code INVALID_URI} for {@code tls=on} without certificates
     */
    static SSLContext tlsContext(TcpOptions o, TransportUri uri, TransportContext context) {
        if (!o.tls()) {
            return null;
        }
        Authentication a = context.authentication();
        if (a == null) {
            throw new TransportException(Kind.INVALID_URI, "'" + uri.text() + "': tls=on needs certificates to key and authenticate"
                    + " the TLS session: add tls-creds=DIR (or cert=,key=,ca=); scripts/make-test-ca.sh makes a test CA");
        }
        return a.tlsContext(uri.text());
    }

    @Override
    public Listener listen(TransportUri uri, TransportContext context) {
        TcpOptions options = TcpOptions.parse(uri);
        SSLContext tls = tlsContext(options, uri, context);
        InetSocketAddress bind = new InetSocketAddress(uri.requireHost(), uri.requirePort());
        if (bind.isUnresolved()) {
            throw new TransportException(Kind.CONNECT_FAILED, "cannot resolve host '" + uri.host() + "' in '" + uri.text() + "'");
        }
        NativeSocket server;
        String reported;
        try {
            server = NativeSocket.listen(bind, 128);
            reported = uri.withPort(server.localAddress().getPort()).text();
        } catch (IOException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "tcp: cannot listen on " + uri.text() + ": " + e.getMessage(), e);
        }
        return new TcpListener(context, server, reported, options, tls);
    }

    @Override
    public Connection connect(TransportUri uri, TransportContext context) {
        TcpOptions o = TcpOptions.parse(uri);
        SSLContext tls = tlsContext(o, uri, context);
        String host = uri.requireHost();
        int port = uri.requirePort();
        if (port == 0) {
            throw new TransportException(Kind.INVALID_URI, "cannot connect to port 0 in '" + uri.text() + "'; give the destination's port");
        }
        int flags = (o.dataDigest() ? Hello.FLAG_DATA_DIGEST : 0) | (o.sharedChannel() ? Hello.FLAG_SHARED_CHANNEL : 0);
        Hello hello = Handshakes.hello(context, uri.text(), "batch-bytes", flags, o.channels(), o.batchBytes());
        InetSocketAddress address = new InetSocketAddress(host, port);
        if (address.isUnresolved()) {
            throw new TransportException(Kind.CONNECT_FAILED, "cannot resolve host '" + host + "' in '" + uri.text() + "'");
        }
        int peerTimeoutMs = (int) TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        KitConnection.Setup setup = new KitConnection.Setup(Role.SOURCE, uri.text(), context.layout(), context.handler(),
                context.heartbeatIntervalNs(), context.peerTimeoutNs(), o.batchBytes(), o.dataDigest(), o.sharedChannel(), o.channels(),
                capabilities(o.channels(), o.dataDigest(), o.urgentDscp() >= 0, o.sharedChannel(), o.tls()),
                StreamConnection.pendingLimit(o.queueDepth(), o.channels(), o.batchBytes()));
        StreamHandshake.Dialer dialer = new StreamHandshake.Dialer() {
            @Override
            public NativeSocket dial(long timeoutMs) throws IOException {
                NativeSocket s = NativeSocket.connect(address, timeoutMs);
                if (tls != null) {
                    try {
                        s.receiveTimeoutMs(timeoutMs);
                        s.sendTimeoutMs(timeoutMs);
                        TlsLayer.client(s, tls, uri.text(), timeoutMs);
                    } catch (IOException | RuntimeException e) {
                        s.close();
                        throw e;
                    }
                }
                return s;
            }

            @Override
            public void urgent(NativeSocket s) throws IOException {
                tuneUrgent(s, o, peerTimeoutMs);
            }

            @Override
            public void background(NativeSocket s) throws IOException {
                tuneBackground(s, o, peerTimeoutMs);
            }

            @Override
            public void shared(NativeSocket s) throws IOException {
                tuneShared(s, o, peerTimeoutMs);
            }

            @Override
            public void joined(NativeSocket[] background) throws IOException {
                if (o.backgroundMaxRate() > 0) {
                    // Each channel its share: the kernel paces per socket.
                    long perChannel = Math.max(1, o.backgroundMaxRate() / o.channels());
                    for (NativeSocket b : background) {
                        b.maxPacingRate(perChannel);
                    }
                }
            }
        };
        return StreamHandshake.connect("tcp", uri.text(), context, hello, dialer,
                (urgent, background) -> new StreamConnection("tcp", setup, urgent, background, o.queueDepth(), o.backgroundNice()));
    }

    static void tuneUrgent(NativeSocket s, TcpOptions o, int peerTimeoutMs) throws IOException {
        s.noDelay(true);
        s.keepAlive(true);
        s.userTimeoutMs(peerTimeoutMs);
        if (o.urgentDscp() >= 0) {
            s.dscp(o.urgentDscp());
        }
        if (o.urgentPriority() >= 0) {
            s.priority(o.urgentPriority());
        }
    }

    /**
     * The shared channel 0 ({@code urgent-channel=shared}): a background socket in every respect,
     * unmarked (marking it would mark the bulk stream), plus TCP_NODELAY so that a lone urgent
     * frame is not held back by Nagle: it waits only behind the bulk data queued ahead of it.
     */
    static void tuneShared(NativeSocket s, TcpOptions o, int peerTimeoutMs) throws IOException {
        tuneBackground(s, o, peerTimeoutMs);
        s.noDelay(true);
    }

    static void tuneBackground(NativeSocket s, TcpOptions o, int peerTimeoutMs) throws IOException {
        s.keepAlive(true);
        s.userTimeoutMs(peerTimeoutMs);
        if (o.sndbufBytes() > 0) {
            s.sendBufferBytes(o.sndbufBytes());
        }
        if (o.rcvbufBytes() > 0) {
            s.receiveBufferBytes(o.rcvbufBytes());
        }
        if (o.notSentLowatBytes() > 0) {
            s.notSentLowatBytes(o.notSentLowatBytes());
        }
    }
}
