package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportProvider;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import io.pagewire.transport.tcp.net.NativeSocket;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.security.SecureRandom;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * {@code tcp://host:port?channels=N&data-digest=true|false&...}: the TCP transport. See
 * {@code docs/uri-reference.md} for every option.
 */
public final class TcpTransportProvider implements TransportProvider {
    private static final SecureRandom RANDOM = new SecureRandom();

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
    static Set<Capability> capabilities(int channels, boolean dataDigest, boolean marked, boolean sharedChannel) {
        EnumSet<Capability> c = EnumSet.of(Capability.ZERO_COPY_RECEIVE);
        c.add(dataDigest ? Capability.DATA_DIGEST : Capability.ZERO_COPY_SEND);
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

    @Override
    public Listener listen(TransportUri uri, TransportContext context) {
        TcpOptions options = TcpOptions.parse(uri);
        uri.requirePort();
        return new TcpListener(uri, options, context);
    }

    @Override
    public Connection connect(TransportUri uri, TransportContext context) {
        TcpOptions o = TcpOptions.parse(uri);
        String host = uri.requireHost();
        int port = uri.requirePort();
        if (port == 0) {
            throw new TransportException(Kind.INVALID_URI, "cannot connect to port 0 in '" + uri.text() + "'; give the destination's port");
        }
        RamLayout layout = context.layout();
        for (RegionDescriptor d : layout.descriptors()) {
            if (d.pageSize() > o.batchBytes()) {
                throw new TransportException(Kind.INVALID_URI, "batch-bytes=" + o.batchBytes() + " in '" + uri.text()
                        + "' is smaller than region '" + d.name() + "''s page size " + d.pageSize() + "; raise batch-bytes");
            }
        }
        long timeoutMs = TimeUnit.NANOSECONDS.toMillis(context.connectTimeoutNs());
        int heartbeatMs = (int) Math.max(1, TimeUnit.NANOSECONDS.toMillis(context.heartbeatIntervalNs()));
        int peerTimeoutMs = (int) TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        long sessionId = RANDOM.nextLong() | 1;
        int flags = (o.dataDigest() ? Hello.FLAG_DATA_DIGEST : 0) | (o.sharedChannel() ? Hello.FLAG_SHARED_CHANNEL : 0);
        Hello hello = new Hello(sessionId, flags, o.channels(), o.batchBytes(),
                heartbeatMs, peerTimeoutMs, layout.descriptors());
        if (hello.encodedLength() > Wire.MAX_HELLO_BYTES) {
            throw new TransportException(Kind.INVALID_CONFIG, "the RAM layout needs a " + hello.encodedLength()
                    + "-byte HELLO, over the " + Wire.MAX_HELLO_BYTES + "-byte limit; use fewer regions or shorter names");
        }
        InetSocketAddress address = new InetSocketAddress(host, port);
        if (address.isUnresolved()) {
            throw new TransportException(Kind.CONNECT_FAILED, "cannot resolve host '" + host + "' in '" + uri.text() + "'");
        }
        NativeSocket urgent = null;
        NativeSocket[] background = new NativeSocket[o.channels()];
        String step = o.sharedChannel() ? "connect the shared channel 0" : "connect the urgent connection";
        try {
            urgent = NativeSocket.connect(address, timeoutMs);
            if (o.sharedChannel()) {
                configureShared(urgent, o, peerTimeoutMs);
                background[0] = urgent; // the HELLO's connection is background channel 0 and carries the urgent lane too
            } else {
                configureUrgent(urgent, o, peerTimeoutMs);
            }
            byte[] payload = new byte[hello.encodedLength()];
            hello.encode(java.lang.foreign.MemorySegment.ofArray(payload));
            step = "send HELLO";
            Handshake.write(urgent, FrameType.HELLO, 0, 0, 0, payload);
            for (int c = o.sharedChannel() ? 1 : 0; c < o.channels(); c++) {
                step = "connect background channel " + c;
                background[c] = NativeSocket.connect(address, timeoutMs);
                configureBackground(background[c], o, peerTimeoutMs);
                Handshake.write(background[c], FrameType.JOIN, o.channels(), sessionId, c, null);
            }
            if (o.backgroundMaxRate() > 0) {
                // Each channel its share: the kernel paces per socket.
                long perChannel = Math.max(1, o.backgroundMaxRate() / o.channels());
                for (NativeSocket b : background) {
                    b.maxPacingRate(perChannel);
                }
            }
            step = "wait for the destination's answer";
            urgent.receiveTimeoutMs(timeoutMs);
            int version = Handshake.readPreamble(urgent);
            if (version < 0) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri.text() + " closed the connection without answering");
            }
            Handshake.Frame answer = Handshake.readFrame(urgent, 0);
            if (answer.type() == FrameType.ERROR) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri.text() + " refused the migration: " + answer.text());
            }
            if (version != Wire.VERSION) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri.text() + " speaks wire version " + version
                        + "; this source speaks version " + Wire.VERSION);
            }
            if (answer.type() != FrameType.HELLO_ACK || answer.first() != sessionId) {
                throw new WireException("expected HELLO_ACK for session " + Long.toHexString(sessionId) + ", got "
                        + FrameType.name(answer.type()) + " for " + Long.toHexString(answer.first()));
            }
            long peerHeartbeatMs = answer.count();
            if (peerHeartbeatMs < 1 || 2 * peerHeartbeatMs > peerTimeoutMs) {
                throw new TransportException(Kind.HANDSHAKE, "the destination's heartbeat interval " + peerHeartbeatMs
                        + " ms is too long for this source's peer timeout " + peerTimeoutMs + " ms");
            }
            TcpConnection connection = new TcpConnection(Role.SOURCE, uri.text(), layout, o.channels(), o.dataDigest(), o.batchBytes(),
                    o.queueDepth(), urgent, background, context.handler(), context.heartbeatIntervalNs(), context.peerTimeoutNs(),
                    capabilities(o.channels(), o.dataDigest(), o.urgentDscp() >= 0, o.sharedChannel()), o.backgroundNice(), o.sharedChannel());
            connection.start();
            return connection;
        } catch (IOException e) {
            closeAll(urgent, background);
            throw new TransportException(Kind.CONNECT_FAILED, "tcp: could not " + step + " to " + uri.text() + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            closeAll(urgent, background);
            throw e;
        }
    }

    static void closeAll(NativeSocket urgent, NativeSocket[] background) {
        if (urgent != null) {
            urgent.close();
        }
        for (NativeSocket s : background) {
            if (s != null) {
                s.close();
            }
        }
    }

    static void configureUrgent(NativeSocket s, TcpOptions o, int peerTimeoutMs) throws IOException {
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
    static void configureShared(NativeSocket s, TcpOptions o, int peerTimeoutMs) throws IOException {
        configureBackground(s, o, peerTimeoutMs);
        s.noDelay(true);
    }

    static void configureBackground(NativeSocket s, TcpOptions o, int peerTimeoutMs) throws IOException {
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
