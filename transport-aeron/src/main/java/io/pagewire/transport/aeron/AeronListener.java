package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Subscription;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Authentication;
import io.pagewire.transport.spi.kit.HandshakeGuard;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.kit.ReadyQueue;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import org.agrona.concurrent.IdleStrategy;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;

/**
 * Accepts sources on a rendezvous stream ({@code aeron:udp?endpoint=host:port}, or {@code aeron:ipc} with a stream
 * id). Each source publishes one CONNECT message (envelope, preamble, HELLO; see {@link Handshake}); the listener
 * thread collects it, checks it and answers refusals itself. A good HELLO gets a reply publication and waits in a
 * bounded queue for {@link #accept}, which opens the connection's own urgent and background subscriptions (ports
 * chosen by the system), answers HELLO_ACK naming them, and waits for the source to JOIN both.
 *
 * <p>Everything a source can make the listener hold is bounded: handshakes in progress, refusals being delivered,
 * sources waiting for accept, the size of a CONNECT message. Connections own their streams and driver leases, so
 * closing the listener leaves accepted connections running.
 */
final class AeronListener implements Listener {
    private static final System.Logger LOG = System.getLogger(AeronListener.class.getName());
    private static final int MAX_HANDSHAKES = 16;
    private static final int MAX_REFUSALS = 16;
    private static final int MAX_READY = 8;
    private static final long REFUSAL_DELIVERY_NS = TimeUnit.SECONDS.toNanos(5);

    private final AeronOptions options;
    private final TransportContext context;
    private final RamLayout layout;
    private final Drivers.Lease lease;
    private final Subscription rendezvous;
    private final int streamId;
    private final String uri;
    private final long connectTimeoutNs;
    private final Thread thread;
    /** Rendezvous streams listened on in this process (driver, endpoint, stream id): one listener each. */
    private static final java.util.Set<String> ACTIVE = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final String activeKey;
    private final ConcurrentLinkedQueue<Image> arrived = new ConcurrentLinkedQueue<>();
    private final ReadyQueue<Ready> ready = new ReadyQueue<>(MAX_READY);
    private final HandshakeGuard guard;
    /**
     * Largest term length of an image on the listening stream: a pagewire source's handshake publication uses
     * {@link AeronOptions#URGENT_TERM_LENGTH}; a larger one is a stranger making the driver map a large log (up to
     * 3 x 1 GiB), rejected as soon as it appears.
     */
    static final int MAX_HANDSHAKE_TERM_LENGTH = AeronOptions.URGENT_TERM_LENGTH;
    /** Images on the listening stream rejected for their term length (for tests and diagnostics). */
    private final java.util.concurrent.atomic.AtomicLong rejectedTermLength = new java.util.concurrent.atomic.AtomicLong();

    /** @return images on the listening stream rejected so far for a term length over {@link #MAX_HANDSHAKE_TERM_LENGTH} */
    long rejectedForTermLength() {
        return rejectedTermLength.get();
    }

    /** Most sources authenticating at once (each holds a thread and a reply publication for at most the connect timeout). */
    static final int MAX_AUTHENTICATING = 8;
    private final java.util.concurrent.Semaphore authSlots = new java.util.concurrent.Semaphore(MAX_AUTHENTICATING);
    private volatile boolean closed;

    /** A source whose HELLO was accepted, waiting for {@link #accept}. */
    private record Ready(Hello hello, ExclusivePublication reply, String peer, long arrivedNs, AuthExchange.Result auth) {
    }

    /** A CONNECT being collected from one rendezvous image. Listener thread only. */
    private static final class Pending {
        final Image image;
        final MessageCollector collector = new MessageCollector(Handshake.MAX_CONNECT_LENGTH);
        final long deadlineNs;

        Pending(Image image, long deadlineNs) {
            this.image = image;
            this.deadlineNs = deadlineNs;
        }
    }

    /** A refusal on its way to a source. Listener thread only. */
    private record Refusal(ExclusivePublication pub, byte[] message, String why, long deadlineNs) {
    }

    AeronListener(TransportUri parsed, AeronOptions options, TransportContext context) {
        this.options = options;
        this.context = context;
        this.layout = context.layout();
        this.connectTimeoutNs = context.connectTimeoutNs();
        this.guard = Handshakes.guard(context);
        // The driver of the connections' urgent streams: the reply publication made here becomes one of them.
        this.lease = AeronTransportProvider.urgentLease(options, parsed.text());
        this.streamId = options.streamId() == 0 ? AeronTransportProvider.randomStreamId() : options.streamId();
        // Two subscriptions to one stream in one driver would both see every CONNECT (Aeron fans out); refuse.
        this.activeKey = lease.directory() + "|" + (options.ipc() ? "ipc" : AeronOptions.hostPort(options.host(), options.port()))
                + "|" + streamId;
        if (options.port() != 0 && !ACTIVE.add(activeKey)) {
            lease.close();
            throw new TransportException(Kind.INVALID_CONFIG, "aeron: another listener of this process already listens on '"
                    + parsed.text() + "' (stream id " + streamId + "); give another " + (options.ipc() ? "stream-id (0 picks a free one)"
                    : "endpoint port (0 picks a free one)"));
        }
        try {
            String channel = options.urgentChannel(options.host(), Math.max(options.port(), 0), false);
            this.rendezvous = AeronTransportProvider.subscribe(lease, channel, streamId, image -> {
                arrived.add(image);
            }, "the listening stream " + parsed.text());
            this.uri = reportedUri(parsed);
        } catch (RuntimeException e) {
            ACTIVE.remove(activeKey);
            lease.close();
            throw e;
        }
        this.thread = Thread.ofPlatform().daemon().name("pagewire-aeron-listen").start(this::listenLoop);
    }

    private String reportedUri(TransportUri parsed) {
        StringBuilder sb = new StringBuilder("aeron:").append(options.ipc() ? "ipc" : "udp");
        List<String> parts = new ArrayList<>();
        if (!options.ipc()) {
            int port = Await.boundPort(rendezvous, "the listening stream", System.nanoTime() + TimeUnit.SECONDS.toNanos(10));
            parts.add("endpoint=" + AeronOptions.hostPort(options.host(), port));
        } else {
            parts.add("aeron.dir=" + lease.directory());
        }
        if (options.ipc() || options.streamIdGiven()) {
            parts.add("stream-id=" + streamId);
        }
        for (Map.Entry<String, String> e : parsed.options().entrySet()) {
            if (!e.getKey().equals("endpoint") && !e.getKey().equals("stream-id") && !e.getKey().equals("aeron.dir")) {
                parts.add(e.getKey() + "=" + e.getValue());
            }
        }
        return sb.append('?').append(String.join("|", parts)).toString();
    }

    @Override
    public String uri() {
        return uri;
    }

    // ================================================================== listener thread

    private void listenLoop() {
        List<Pending> pending = new ArrayList<>();
        List<Refusal> refusals = new ArrayList<>();
        IdleStrategy idle = Await.idle();
        try {
            while (!closed) {
                int work = 0;
                Image image;
                while ((image = arrived.poll()) != null) {
                    work++;
                    if (image.termBufferLength() > MAX_HANDSHAKE_TERM_LENGTH) {
                        // Its log buffers were sized by the sender before any pagewire byte was read: let go of them at once.
                        LOG.log(System.Logger.Level.INFO, "aeron: rejecting a stream from " + image.sourceIdentity() + " with term length "
                                + image.termBufferLength() + " on the listening stream (a pagewire source uses " + MAX_HANDSHAKE_TERM_LENGTH + ")");
                        AeronTransportProvider.reject(image, "term length " + image.termBufferLength() + " exceeds the "
                                + MAX_HANDSHAKE_TERM_LENGTH + " of a pagewire handshake stream");
                        rejectedTermLength.incrementAndGet();
                    } else if (pending.size() >= MAX_HANDSHAKES) {
                        AeronTransportProvider.reject(image, "the destination has " + MAX_HANDSHAKES + " handshakes in progress; try again");
                    } else {
                        pending.add(new Pending(image, System.nanoTime() + connectTimeoutNs));
                    }
                }
                for (Iterator<Pending> it = pending.iterator(); it.hasNext(); ) {
                    Pending p = it.next();
                    if (p.collector.poll(p.image)) {
                        work++;
                        it.remove();
                        handle(p, refusals);
                    } else if (p.image.isClosed() || p.image.isEndOfStream()) {
                        it.remove(); // the source left before finishing its CONNECT
                    } else if (System.nanoTime() - p.deadlineNs > 0) {
                        it.remove();
                        LOG.log(System.Logger.Level.DEBUG, "aeron: no whole CONNECT from " + p.image.sourceIdentity() + " within the connect timeout");
                        AeronTransportProvider.reject(p.image, "no whole CONNECT message within the connect timeout");
                    }
                }
                work += deliver(refusals);
                idle.idle(work);
            }
        } catch (RuntimeException e) {
            if (!closed) {
                LOG.log(System.Logger.Level.ERROR, "aeron: listener " + uri + " stopped: " + e, e);
            }
        } finally {
            for (Refusal r : refusals) {
                r.pub().close();
            }
        }
    }

    /** A whole CONNECT arrived: refuse it, or queue it for accept. */
    private void handle(Pending p, List<Refusal> refusals) {
        MemorySegment m = p.collector.message();
        Handshake.Envelope envelope = Handshake.envelope(m, options.ipc());
        String source = p.image.sourceIdentity();
        if (envelope == null) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: ignoring a message without a pagewire envelope from " + source + ": "
                    + Wire.printable(m, 16));
            AeronTransportProvider.reject(p.image, "not a pagewire source (no CONNECT envelope)");
            return;
        }
        String error = null;
        Hello hello = null;
        if (p.collector.overflowBytes() > 0) {
            error = "handshake message of " + p.collector.overflowBytes() + " bytes exceeds the " + Handshake.MAX_CONNECT_LENGTH + "-byte limit";
        } else {
            try {
                hello = Handshake.hello(m.asSlice(Handshake.ENVELOPE_LENGTH));
                error = check(hello, source);
            } catch (WireException e) {
                error = e.getMessage();
            }
        }
        String replyChannel = replyChannel(source, envelope.replyPort());
        if (error != null) {
            refuse(replyChannel, envelope.replyStream(), error, source, refusals);
            return;
        }
        ExclusivePublication reply;
        try {
            reply = lease.aeron().addExclusivePublication(replyChannel, envelope.replyStream());
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "aeron: cannot answer the source " + source + " on " + replyChannel + ": " + e);
            return;
        }
        String peer = options.ipc() ? "aeron:ipc session " + p.image.sessionId() : source;
        if (context.authentication() != null) {
            if (!authSlots.tryAcquire()) {
                reply.close();
                refuse(replyChannel, envelope.replyStream(), "the destination has " + MAX_AUTHENTICATING + " sources authenticating; try again",
                        source, refusals);
                return;
            }
            Hello h = hello;
            try {
                Thread.ofPlatform().daemon().name("pagewire-aeron-auth").start(() -> {
                    try {
                        authenticate(h, reply, p.image, peer, p.deadlineNs);
                    } finally {
                        authSlots.release();
                    }
                });
            } catch (RuntimeException | OutOfMemoryError e) {
                authSlots.release();
                reply.close();
                throw e;
            }
            return;
        }
        if (!ready.offer(new Ready(hello, reply, peer, System.nanoTime(), null))) {
            reply.close();
            refuse(replyChannel, envelope.replyStream(), "the destination has " + MAX_READY + " migrations waiting to be accepted; try again",
                    source, refusals);
        }
    }

    /**
     * The kit's authentication of a source whose CONNECT asked for it ({@link AeronAuth}), on its own thread: AUTH 1
     * and 3 from its rendezvous image, AUTH 2 on the reply stream. Only then is the layout looked at and the source
     * queued for {@link #accept}; a refused one is told (tersely, when it failed to prove itself) and its reply closed.
     */
    private void authenticate(Hello hello, ExclusivePublication reply, Image image, String peer, long deadlineNs) {
        String why;
        try {
            AuthExchange.Result auth = AuthExchange.destination(context.authentication(), hello,
                    AeronAuth.channel(reply, image, deadlineNs, "the source"), peer);
            LOG.log(System.Logger.Level.INFO, "aeron: source " + peer + " authenticated as " + auth.peerIdentity());
            why = Handshakes.refusal(context, hello);
            if (why == null) {
                if (ready.offer(new Ready(hello, reply, peer, System.nanoTime(), auth))) {
                    return;
                }
                why = "the destination has " + MAX_READY + " migrations waiting to be accepted; try again";
            }
        } catch (AuthExchange.Refusal e) {
            LOG.log(System.Logger.Level.WARNING, "refused: " + e.detail());
            why = e.getMessage();
        } catch (TransportException | java.io.IOException e) {
            LOG.log(System.Logger.Level.INFO, "aeron: authentication with " + peer + " broke off: " + e.getMessage());
            why = AuthExchange.REFUSED;
        }
        Await.offer(reply, Handshake.error(why), System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500));
        reply.close();
    }

    /** @return null when the HELLO fits this destination, else why not */
    private String check(Hello hello, String source) {
        Authentication auth = context.authentication();
        if (auth != null && !hello.authenticated()) {
            LOG.log(System.Logger.Level.WARNING, "refused: source " + source + " offered no authentication; this destination requires " + auth.mode());
            return AuthExchange.REFUSED + ": this destination accepts only authenticated sources (docs/security.md)";
        }
        if (options.frameMac() && !hello.frameMac()) {
            return "this destination takes only sources with frame-mac=on (a MAC after every frame); add frame-mac=on to the source's URI";
        }
        if (hello.frameMac() && !hello.authenticated()) {
            return "invalid HELLO: frame-mac without authentication (the MAC keys come from the authenticated handshake)";
        }
        if (auth == null && hello.authenticated()) {
            return "this destination does not authenticate sources (no psk-file= or tls-creds= in its URI); remove the credentials"
                    + " from the source's URI or add them to the destination's";
        }
        // With authentication the layout is checked only once the source has proved itself (start()): a stranger learns nothing of it.
        String why = auth == null ? Handshakes.refusal(context, hello) : null;
        if (why == null && hello.channels() != 1) {
            why = "aeron carries the background lane on one stream; the HELLO asks for " + hello.channels() + " channels";
        }
        return why != null ? why : guard.admitHello(hello, source);
    }

    /** The answer goes to the address the datagrams came from (never one the message names), at the reply port. */
    private String replyChannel(String sourceIdentity, int replyPort) {
        if (options.ipc()) {
            return options.urgentChannel(null, 0, true);
        }
        String host = sourceIdentity.substring(0, sourceIdentity.lastIndexOf(':'));
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int slash = host.indexOf('/');
        if (slash >= 0) {
            host = host.substring(slash + 1);
        }
        return options.urgentChannel(host, replyPort, true);
    }

    private void refuse(String channel, int stream, String why, String source, List<Refusal> refusals) {
        LOG.log(System.Logger.Level.DEBUG, "aeron: refusing the source " + source + ": " + why);
        if (refusals.size() >= MAX_REFUSALS) {
            LOG.log(System.Logger.Level.INFO, "aeron: too many refusals in flight; the source " + source + " is not told: " + why);
            return;
        }
        try {
            ExclusivePublication pub = lease.aeron().addExclusivePublication(channel, stream);
            refusals.add(new Refusal(pub, Handshake.error(why), why, System.nanoTime() + REFUSAL_DELIVERY_NS));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.INFO, "aeron: cannot tell the source " + source + " why it is refused (" + why + "): " + e);
        }
    }

    /** Moves refusals along without blocking: offer once connected, then close (the driver delivers it). */
    private static int deliver(List<Refusal> refusals) {
        int work = 0;
        for (Iterator<Refusal> it = refusals.iterator(); it.hasNext(); ) {
            Refusal r = it.next();
            if (r.pub().isConnected()) {
                long result = r.pub().offer(new org.agrona.concurrent.UnsafeBuffer(r.message()));
                if (result > 0 || (result != io.aeron.Publication.BACK_PRESSURED && result != io.aeron.Publication.ADMIN_ACTION)) {
                    it.remove();
                    r.pub().close(); // lingers until the refusal is delivered
                    work++;
                }
            } else if (System.nanoTime() - r.deadlineNs() > 0) {
                it.remove();
                r.pub().close();
                LOG.log(System.Logger.Level.INFO, "aeron: the refused source did not take the answer in time: " + r.why());
            }
        }
        return work;
    }

    // ================================================================== accept

    @Override
    public Connection accept(MessageHandler handler, Duration timeout) {
        return ready.accept(uri, timeout, r -> {
            if (System.nanoTime() - r.arrivedNs() > connectTimeoutNs) {
                refuseNow(r, "the destination did not accept the migration within the connect timeout");
                return null;
            }
            return start(r, handler);
        }, () -> closed, () -> thread.isAlive() ? null
                : new TransportException(Kind.CONNECT_FAILED, "listener " + uri + " stopped listening (see the log)"));
    }

    /** Tells a waiting source why it is turned away (briefly waiting for delivery) and closes its reply stream. */
    private static void refuseNow(Ready r, String why) {
        Await.offer(r.reply(), Handshake.error(why), System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500));
        r.reply().close();
    }

    /** Opens the connection's own streams, answers HELLO_ACK and waits for both JOINs; null when the source went away. */
    private AeronConnection start(Ready r, MessageHandler handler) {
        Hello h = r.hello();
        long deadline = System.nanoTime() + connectTimeoutNs;
        Drivers.Lease[] leases = AeronTransportProvider.leases(options, "'" + uri + "'");
        Subscription urgentSub = null;
        Subscription bgSub = null;
        String step = "open the connection's streams";
        try {
            int urgentStream = AeronTransportProvider.randomStreamId();
            int bgStream = AeronTransportProvider.randomStreamId();
            urgentSub = AeronTransportProvider.subscribe(leases[0], options.urgentChannel(options.host(), 0, false), urgentStream, null,
                    "the urgent stream");
            bgSub = AeronTransportProvider.subscribe(leases[1], options.backgroundChannel(options.host(), 0, false), bgStream, null,
                    "the background stream");
            int urgentPort = options.ipc() ? 0 : Await.boundPort(urgentSub, "the urgent stream", deadline);
            int bgPort = options.ipc() ? 0 : Await.boundPort(bgSub, "the background stream", deadline);
            long heartbeatMs = Handshakes.heartbeatMs(context);
            step = "answer HELLO_ACK";
            byte[] ack = Handshake.ack(new Handshake.Ack(h.sessionId(), heartbeatMs, urgentPort, urgentStream, bgPort, bgStream));
            long written = Await.offer(r.reply(), ack, deadline);
            if (written < 0) {
                throw new TransportException(Kind.CONNECT_FAILED, "the source " + r.peer() + " no longer takes answers ("
                        + AeronConnection.code(written) + ")");
            }
            step = "wait for the source to join the urgent and background streams";
            Image urgentImage = awaitJoin(urgentSub, h.sessionId(), Handshake.URGENT_STREAM_INDEX, r.auth(), deadline);
            Image bgImage = awaitJoin(bgSub, h.sessionId(), 0, r.auth(), deadline);
            AeronConnection.Streams streams = new AeronConnection.Streams(leases[0], leases[1], r.reply(), urgentSub, urgentImage,
                    null, bgSub, bgImage);
            AeronConnection c = new AeronConnection(Role.DESTINATION, r.peer(), layout, options, h.dataDigest(), h.maxPagePayload(),
                    handler, context.heartbeatIntervalNs(), context.peerTimeoutNs(), streams, h.frameMac() ? r.auth() : null);
            c.start();
            return c;
        } catch (TransportException e) {
            if (e instanceof AuthExchange.Refusal refusal) {
                LOG.log(System.Logger.Level.WARNING, "refused: " + refusal.detail());
                refuseNow(r, e.getMessage());
            } else {
                LOG.log(System.Logger.Level.INFO, "aeron: could not " + step + " with the source " + r.peer() + ": " + e.getMessage());
                refuseNow(r, "the destination could not " + step + ": " + e.getMessage());
            }
            if (urgentSub != null) {
                urgentSub.close();
            }
            if (bgSub != null) {
                bgSub.close();
            }
            leases[0].close();
            leases[1].close();
            return null;
        }
    }

    /** Waits for the first image on {@code sub} whose first message is the right JOIN; rejects others. */
    private static Image awaitJoin(Subscription sub, long sessionId, long streamIndex, AuthExchange.Result auth, long deadlineNs) {
        IdleStrategy idle = Await.idle();
        List<Image> rejected = new ArrayList<>();
        Image candidate = null;
        MessageCollector collector = null;
        while (true) {
            if (candidate == null) {
                for (Image i : sub.images()) {
                    if (!rejected.contains(i)) {
                        candidate = i;
                        collector = new MessageCollector(Handshake.JOIN_LENGTH * 4 + AuthExchange.JOIN_MAC_BYTES);
                        break;
                    }
                }
            }
            if (candidate != null && collector.poll(candidate)) {
                String why = collector.overflowBytes() > 0 ? "oversized first message"
                        : Handshake.checkJoin(collector.message(), sessionId, streamIndex, auth);
                if (why == null) {
                    return candidate;
                }
                LOG.log(System.Logger.Level.INFO, "aeron: rejecting a stranger on " + sub.channel() + " from " + candidate.sourceIdentity() + ": " + why);
                AeronTransportProvider.reject(candidate, why);
                rejected.add(candidate);
                candidate = null;
            }
            if (System.nanoTime() - deadlineNs > 0) {
                throw new TransportException(Kind.CONNECT_FAILED, "no JOIN on " + sub.channel() + " stream " + sub.streamId()
                        + " within the connect timeout");
            }
            if (Thread.currentThread().isInterrupted()) {
                throw new TransportException(Kind.CLOSED, "interrupted while waiting for the source to join");
            }
            idle.idle();
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            thread.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Ready r : ready.drain()) {
            refuseNow(r, "the destination stopped listening before accepting this migration");
        }
        rendezvous.close();
        ACTIVE.remove(activeKey);
        lease.close();
    }

    @Override
    public String toString() {
        return "AeronListener[" + uri + "]";
    }
}
