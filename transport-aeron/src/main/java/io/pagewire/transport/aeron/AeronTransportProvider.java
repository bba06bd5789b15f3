package io.pagewire.transport.aeron;

import io.aeron.AvailableImageHandler;
import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Subscription;
import io.aeron.exceptions.AeronException;
import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportProvider;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import org.agrona.concurrent.IdleStrategy;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.channels.DatagramChannel;
import java.security.SecureRandom;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * {@code aeron:udp?endpoint=host:port|...} and {@code aeron:ipc?...}: pagewire over Aeron. See
 * {@code docs/aeron.md} for the options, the drivers and the design of the urgent path.
 *
 * <p>Connect sequence (the source): a reply subscription, then a rendezvous publication to the listener carrying
 * one CONNECT message; the destination answers HELLO_ACK naming the connection's own urgent and background streams;
 * the source publishes to both and JOINs each. Every wait is bounded by the context's connect timeout and every
 * failure names the step and the URI.
 */
public final class AeronTransportProvider implements TransportProvider {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final System.Logger LOG = System.getLogger(AeronTransportProvider.class.getName());

    /** Creates the provider (found by {@link java.util.ServiceLoader}). */
    public AeronTransportProvider() {
    }

    @Override
    public String scheme() {
        return "aeron";
    }

    @Override
    public Map<String, String> options() {
        return AeronOptions.DESCRIPTIONS;
    }

    @Override
    public Set<Capability> capabilities() {
        return EnumSet.of(Capability.SEPARATE_URGENT_PATH, Capability.DATA_DIGEST);
    }

    /**
     * Agrona 2.x reaches {@code jdk.internal.misc.Unsafe}; without the JVM flag that opens it,
     * the first driver or client would fail deep inside Agrona with an {@link IllegalAccessError}.
     */
    @Override
    public String unavailabilityCause() {
        Module agrona = org.agrona.concurrent.UnsafeBuffer.class.getModule();
        if (!Object.class.getModule().isExported("jdk.internal.misc", agrona)) {
            String target = agrona.isNamed() ? agrona.getName() : "ALL-UNNAMED";
            return "Agrona 2.x needs the JVM flag --add-opens java.base/jdk.internal.misc=" + target
                    + (agrona.isNamed() ? " (module path; ALL-UNNAMED covers only the class path)" : "");
        }
        return null;
    }

    @Override
    public Listener listen(TransportUri uri, TransportContext context) {
        AeronOptions options = AeronOptions.parse(uri, true);
        options.checkFrameMac(uri, context);
        return new AeronListener(uri, options, context);
    }

    @Override
    public Connection connect(TransportUri uri, TransportContext context) {
        AeronOptions o = AeronOptions.parse(uri, false);
        o.checkFrameMac(uri, context);
        RamLayout layout = context.layout();
        int flags = (o.dataDigest() ? Hello.FLAG_DATA_DIGEST : 0) | (o.frameMac() ? Hello.FLAG_FRAME_MAC : 0);
        Hello hello = Handshakes.hello(context, uri.text(), "batch-bytes", flags, 1, o.batchBytes());
        long sessionId = hello.sessionId();
        long deadline = System.nanoTime() + context.connectTimeoutNs();
        long timeoutMs = TimeUnit.NANOSECONDS.toMillis(context.connectTimeoutNs());
        Drivers.Lease[] leases = leases(o, "'" + uri.text() + "'");
        Subscription reply = null;
        ExclusivePublication rendezvous = null;
        ExclusivePublication urgentPub = null;
        ExclusivePublication bgPub = null;
        String step = "open the reply stream";
        try {
            int replyStream = randomStreamId();
            String replyHost = o.ipc() ? null : replyAddress(o, uri);
            reply = subscribe(leases[0], o.urgentChannel(replyHost, 0, false), replyStream, null, "the reply stream");
            int replyPort = o.ipc() ? 0 : Await.boundPort(reply, "the reply stream", deadline);
            step = "reach the destination";
            rendezvous = leases[0].aeron().addExclusivePublication(o.urgentChannel(o.host(), Math.max(o.port(), 0), true), o.streamId());
            ExclusivePublication r0 = rendezvous;
            if (!Await.until(r0::isConnected, deadline)) {
                throw new TransportException(Kind.CONNECT_FAILED, "aeron: no destination answered at '" + uri.text() + "' (stream id "
                        + o.streamId() + ") within " + timeoutMs + " ms: is a pagewire listener running there, and is the port open"
                        + " for UDP?");
            }
            step = "send the HELLO";
            long written = Await.offer(rendezvous, Handshake.connect(replyPort, replyStream, hello), deadline);
            if (written < 0) {
                throw new TransportException(Kind.CONNECT_FAILED, "aeron: could not send the HELLO to '" + uri.text() + "': "
                        + AeronConnection.code(written));
            }
            Subscription r1 = reply;
            Image[] answerImage = new Image[1];
            AuthExchange.Result auth = null;
            if (context.authentication() != null) {
                step = "authenticate";
                auth = authenticate(context, hello, uri.text(), rendezvous, r1, answerImage, deadline);
            }
            step = "wait for the destination's answer";
            Handshake.Answer answer = awaitAnswer(r1, o.ipc(), answerImage, deadline, uri.text(), timeoutMs);
            if (answer.error() != null) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri.text() + " refused the migration: " + answer.error());
            }
            Handshake.Ack ack = answer.ack();
            if (ack.sessionId() != sessionId) {
                throw new WireException("expected HELLO_ACK for session " + Long.toHexString(sessionId) + ", got one for "
                        + Long.toHexString(ack.sessionId()));
            }
            Handshakes.checkAck(context, ack.heartbeatMs());
            rendezvous.close();
            rendezvous = null;
            step = "open the urgent and background streams";
            urgentPub = leases[0].aeron().addExclusivePublication(o.urgentChannel(o.host(), ack.urgentPort(), true), ack.urgentStream());
            bgPub = leases[1].aeron().addExclusivePublication(o.backgroundChannel(o.host(), ack.backgroundPort(), true), ack.backgroundStream());
            ExclusivePublication u = urgentPub;
            ExclusivePublication b = bgPub;
            if (!Await.until(() -> u.isConnected() && b.isConnected(), deadline)) {
                throw new TransportException(Kind.CONNECT_FAILED, "aeron: the destination accepted, but its urgent/background streams (ports "
                        + ack.urgentPort() + "/" + ack.backgroundPort() + ") did not connect within " + timeoutMs
                        + " ms: are those UDP ports reachable?");
            }
            step = "join the streams";
            if (Await.offer(urgentPub, Handshake.join(sessionId, Handshake.URGENT_STREAM_INDEX, auth), deadline) < 0
                    || Await.offer(bgPub, Handshake.join(sessionId, 0, auth), deadline) < 0) {
                throw new TransportException(Kind.CONNECT_FAILED, "aeron: could not JOIN the streams of '" + uri.text() + "'");
            }
            AeronConnection.Streams streams = new AeronConnection.Streams(leases[0], leases[1], urgentPub, reply, answerImage[0],
                    bgPub, null, null);
            AeronConnection c = new AeronConnection(Role.SOURCE, uri.text(), layout, o, o.dataDigest(), o.batchBytes(),
                    context.handler(), context.heartbeatIntervalNs(), context.peerTimeoutNs(), streams, o.frameMac() ? auth : null);
            c.start();
            return c;
        } catch (RuntimeException e) {
            RuntimeException thrown = e instanceof TransportException ? e
                    : new TransportException(Kind.CONNECT_FAILED, "aeron: could not " + step + " for '" + uri.text() + "': " + e, e);
            closeAll(thrown, rendezvous, urgentPub, bgPub, reply, leases[0], leases[1]);
            throw thrown;
        }
    }

    /**
     * The source's side of {@link AeronAuth}: AUTH 1 and 3 on the rendezvous stream, AUTH 2 from the reply stream,
     * before the destination tells where its streams are.
     */
    private static AuthExchange.Result authenticate(TransportContext context, Hello hello, String uri, ExclusivePublication rendezvous,
                                                    Subscription reply, Image[] replyImage, long deadline) {
        if (!Await.until(() -> reply.imageCount() > 0, deadline)) {
            throw new TransportException(Kind.CONNECT_FAILED, "aeron: the destination at '" + uri + "' took the HELLO but did not answer"
                    + " the authentication within the connect timeout (or it cannot reach this host's reply port)");
        }
        replyImage[0] = reply.images().getFirst();
        try {
            return AuthExchange.source(context.authentication(), hello, AeronAuth.channel(rendezvous, replyImage[0], deadline,
                    "the destination " + uri), uri);
        } catch (java.io.IOException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "aeron: authentication with " + uri + " broke off: " + e.getMessage(), e);
        }
    }

    private static Handshake.Answer awaitAnswer(Subscription reply, boolean ipc, Image[] imageOut, long deadline, String uri, long timeoutMs) {
        IdleStrategy idle = Await.idle();
        Image image = imageOut[0]; // known already when the authentication ran on it
        MessageCollector collector = new MessageCollector(Handshake.MAX_ANSWER_LENGTH);
        while (true) {
            if (image == null && reply.imageCount() > 0) {
                image = reply.images().getFirst();
            }
            if (image != null && collector.poll(image)) {
                if (collector.overflowBytes() > 0) {
                    throw new WireException("the destination's answer of " + collector.overflowBytes() + " bytes exceeds "
                            + Handshake.MAX_ANSWER_LENGTH);
                }
                imageOut[0] = image;
                return Handshake.answer(collector.message(), ipc);
            }
            if (System.nanoTime() - deadline > 0) {
                throw new TransportException(Kind.CONNECT_FAILED, "aeron: the destination at '" + uri + "' took the HELLO but did not answer"
                        + " within " + timeoutMs + " ms (not accepting, or it cannot reach this host's reply port)");
            }
            if (Thread.currentThread().isInterrupted()) {
                throw new TransportException(Kind.CLOSED, "interrupted while connecting to " + uri);
            }
            idle.idle();
        }
    }

    /** The local address the destination's answers come back to: the one this host uses to reach it. */
    private static String replyAddress(AeronOptions o, TransportUri uri) {
        InetSocketAddress dst = new InetSocketAddress(o.host(), o.port());
        if (dst.isUnresolved()) {
            throw new TransportException(Kind.CONNECT_FAILED, "cannot resolve host '" + o.host() + "' in '" + uri.text() + "'");
        }
        if (o.passThrough().containsKey("interface")) {
            return dst.getAddress() instanceof java.net.Inet6Address ? "::" : "0.0.0.0"; // sends leave by the named interface
        }
        try (DatagramChannel probe = DatagramChannel.open()) {
            probe.connect(dst); // no packet is sent: the kernel only picks the route and local address
            InetAddress local = ((InetSocketAddress) probe.getLocalAddress()).getAddress();
            return local.getHostAddress();
        } catch (IOException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "aeron: no route to " + o.host() + " for '" + uri.text() + "': " + e.getMessage(), e);
        }
    }

    /** Closes what a failed connect opened; a failure to close is kept with the connect's own failure. */
    private static void closeAll(RuntimeException primary, AutoCloseable... resources) {
        for (AutoCloseable r : resources) {
            if (r != null) {
                try {
                    r.close();
                } catch (Exception e) {
                    primary.addSuppressed(e);
                }
            }
        }
    }

    // ================================================================== helpers shared with the listener

    /** @return the urgent and the bulk driver lease for these options (external, shared or separate) */
    static Drivers.Lease[] leases(AeronOptions o, String what) {
        Drivers.Lease urgent = urgentLease(o, what);
        try {
            return new Drivers.Lease[]{urgent, bulkLease(o, what)};
        } catch (RuntimeException e) {
            urgent.close();
            throw e;
        }
    }

    /**
     * @return a lease on the driver of the urgent streams and handshakes: the external one, else the urgent embedded
     *         driver (also for IPC, where both lanes must live in the driver a listener reports), else with
     *         {@code urgent-driver=shared} the bulk one
     */
    static Drivers.Lease urgentLease(AeronOptions o, String what) {
        if (o.aeronDir() != null) {
            return Drivers.directory(o.aeronDir(), what);
        }
        return Drivers.embedded(o.ipc() || o.separateUrgentDriver() ? Drivers.Role.URGENT : Drivers.Role.BULK);
    }

    /** @return a lease on the driver of the background stream */
    static Drivers.Lease bulkLease(AeronOptions o, String what) {
        if (o.aeronDir() != null) {
            return Drivers.directory(o.aeronDir(), what);
        }
        // IPC needs no sender or receiver thread: both lanes live in the driver the listener reports.
        return Drivers.embedded(o.ipc() ? Drivers.Role.URGENT : Drivers.Role.BULK);
    }

    /** @return a random stream id, positive (it may appear in a reported URI), never the listener default */
    static int randomStreamId() {
        int id;
        do {
            id = RANDOM.nextInt(1, Integer.MAX_VALUE);
        } while (id == AeronOptions.DEFAULT_STREAM_ID);
        return id;
    }

    /** Adds a subscription, turning the driver's refusal into a clear error. */
    static Subscription subscribe(Drivers.Lease lease, String channel, int streamId, AvailableImageHandler onImage, String what) {
        try {
            return onImage == null ? lease.aeron().addSubscription(channel, streamId)
                    : lease.aeron().addSubscription(channel, streamId, onImage, image -> { });
        } catch (AeronException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "aeron: the media driver (" + lease + ") refused " + what + " on " + channel
                    + " stream " + streamId + ": " + e.getMessage(), e);
        }
    }

    /** Rejects an image (a stranger on one of our streams), logging when the driver will not. */
    static void reject(Image image, String why) {
        try {
            image.reject(why.length() > 512 ? why.substring(0, 512) : why);
        } catch (AeronException e) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: could not reject the image from " + image.sourceIdentity() + " (" + why + "): " + e);
        }
    }
}
