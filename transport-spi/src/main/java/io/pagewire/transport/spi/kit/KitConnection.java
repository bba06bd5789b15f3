package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.ConnectionStats;
import io.pagewire.transport.spi.DestinationBackgroundLane;
import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.FrameValidator;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The connection contract, written once: what every transport's connection does the same way, so
 * a transport adds only how its medium moves frames (Aeron's {@code Publication} and Netty's
 * {@code AbstractChannel} are the model).
 *
 * <h2>What the base owns</h2>
 * <ul>
 * <li><b>State.</b> Open until the first of: a failure, a local {@link #close()} or {@link #abort}, or the
 *     peer's orderly end after completion. {@link #failure()} is null while healthy and after a clean end;
 *     {@link #isClosed()} is true after any of them.</li>
 * <li><b>Failure.</b> {@link #fail} records the first failure only; its {@link FailureOrigin} decides whether the
 *     peer is told (an ERROR through {@link #writeUrgent}) and whether the handler's {@code onError} runs
 *     (once, never after completion). Then {@link #shutdown()} wakes every thread.</li>
 * <li><b>Completion.</b> The destination's acknowledgement is written by the urgent lane: from the moment it is
 *     being written, an end of stream is orderly (the source may read it and close before the writer returns).</li>
 * <li><b>Threads and release.</b> Threads registered with {@link #thread} start in {@link #open()} after the
 *     handler's {@code onOpen}; how a thread ends is turned into the right failure ({@link #ioFailure} for I/O).
 *     When the connection has ended and the last thread has stopped, {@link #release()} runs once and then the
 *     handler's {@code onClosed}. {@link #close()} is idempotent, joins the threads (never itself) and may be
 *     called from a handler.</li>
 * <li><b>Liveness.</b> {@link #maybeHeartbeat} on the urgent path when idle, {@link #checkPeerTimeout} for silence.</li>
 * <li><b>Lanes.</b> The urgent lane (checks, lock, stats, the acknowledgement) and, on the destination, the
 *     background lane; the source background lane is the transport's, built on {@link SourceLane}.</li>
 * </ul>
 *
 * <h2>What a transport adds</h2>
 * {@link #writeUrgent} and {@link #writeUrgentPages} (one frame, under the urgent lock), {@link #shutdown()}
 * (wake every thread), {@link #release()} (free everything), its threads, its source background lane, and
 * a {@link FrameDispatcher} per receiving thread fed with validated frames.
 *
 * <h2>Threading</h2>
 * Any thread may call {@link #fail}, {@link #close()} and {@link #abort}. Urgent sends are serialised by
 * {@link #urgentLock}, which no transport thread holds while blocking on the peer except to write.
 */
public abstract class KitConnection implements Connection {
    private static final System.Logger LOG = System.getLogger(KitConnection.class.getName());
    /** How long a stream that broke waits for the urgent path to bring the peer's own reason. */
    private static final long PEER_REASON_WAIT_MS = 500;
    /** How long the release waits for a failing side's ERROR to be written before it wakes the writer. */
    private static final long TELL_WAIT_MS = 500;
    private static final long JOIN_MS = TimeUnit.SECONDS.toMillis(5);

    /**
     * What a connection is, as its handshake settled it.
     *
     * @param role source or destination
     * @param peer the peer, for messages
     * @param layout this side's RAM
     * @param handler receives what the peer sends (null: ignore everything)
     * @param heartbeatNs urgent-path heartbeat interval when idle
     * @param peerTimeoutNs silence after which the peer counts as gone
     * @param maxPayload largest page payload of one frame (negotiated)
     * @param dataDigest whether page frames carry a CRC32C
     * @param sharedChannel whether urgent frames travel on background stream 0 (flag URGENT_LANE)
     * @param streams background streams (the destination's round barrier waits for all of them)
     * @param capabilities what the connection can do
     * @param pendingLimitBytes bound on offered, unsent background page data
     */
    public record Setup(Role role, String peer, RamLayout layout, MessageHandler handler, long heartbeatNs, long peerTimeoutNs,
                        int maxPayload, boolean dataDigest, boolean sharedChannel, int streams, Set<Capability> capabilities,
                        long pendingLimitBytes) {
        public Setup {
            Objects.requireNonNull(role, "role");
            Objects.requireNonNull(layout, "layout");
            capabilities = Set.copyOf(capabilities);
            if (streams < 1) {
                throw new IllegalArgumentException("streams " + streams + " < 1");
            }
        }
    }

    /** A thread's work; whatever it throws becomes the connection's failure. */
    @FunctionalInterface
    protected interface Body {
        void run() throws Exception;
    }

    protected final Role role;
    protected final String peer;
    protected final RamLayout layout;
    protected final int maxPayload;
    protected final boolean dataDigest;
    protected final FrameValidator validator;
    protected final ConnectionStats stats;
    protected final long heartbeatNs;
    protected final long peerTimeoutNs;
    /** Serialises urgent writes (fair when urgent frames share a background stream: they go between its frames). */
    protected final ReentrantLock urgentLock;
    private final MessageHandler handler;
    private final Set<Capability> capabilities;
    private final Barrier barrier;
    /** Destination: pages claimed on the background lane in the current round (null at the source). */
    private final RoundClaims claims;
    /** Destination: the last round that ended (the barrier orders the updates), -1 before the first. */
    private long lastRound = -1;
    private final Lane urgentLane = new UrgentLane();
    private volatile Lane backgroundLane;

    private final AtomicReference<TransportException> failure = new AtomicReference<>();
    private final CountDownLatch failed = new CountDownLatch(1);
    private final AtomicBoolean closed = new AtomicBoolean();
    private final AtomicBoolean errorReported = new AtomicBoolean();
    /**
     * Destination: the one verdict of the migration, decided once by whichever comes first: the
     * acknowledgement ({@link #ACKNOWLEDGED}, then nothing turns it into a failure) or a failure
     * ({@link #FAILED}, then no acknowledgement is sent).
     */
    private final AtomicInteger verdict = new AtomicInteger(UNDECIDED);
    private static final int UNDECIDED = 0;
    private static final int ACKNOWLEDGED = 1;
    private static final int FAILED = 2;
    /** The peer of each stream that is not the urgent one's (its own address), by the name messages use. */
    private final Map<String, String> streamPeers = new ConcurrentHashMap<>();
    /** Source: the destination acknowledged COMPLETE. Destination: the acknowledgement was written. */
    private volatile boolean completed;
    /** Destination: the acknowledgement is being written; an end of stream is orderly from here on. */
    private volatile boolean acknowledging;
    private volatile boolean peerEnded;
    private volatile long lastReceivedNs = System.nanoTime();
    private volatile long lastSentNs = System.nanoTime();
    private boolean urgentClosed; // guarded by urgentLock

    private final List<Thread> threads = new ArrayList<>();
    private final AtomicInteger liveThreads = new AtomicInteger();
    /** Calls of {@link #fail} still deciding or telling the peer: the release waits for them, briefly ({@link #awaitPeerTold}). */
    private final AtomicInteger failing = new AtomicInteger();
    private final Object lifecycle = new Object();
    private boolean opened;   // guarded by lifecycle
    private boolean released; // guarded by lifecycle
    private boolean ended;    // guarded by lifecycle: onClosed has been (or is being) called

    protected KitConnection(Setup s) {
        this.role = s.role();
        this.peer = s.peer();
        this.layout = s.layout();
        this.maxPayload = s.maxPayload();
        this.dataDigest = s.dataDigest();
        this.validator = new FrameValidator(layout.descriptors(), maxPayload, dataDigest, s.sharedChannel());
        this.stats = new ConnectionStats(s.pendingLimitBytes());
        this.heartbeatNs = s.heartbeatNs();
        this.peerTimeoutNs = s.peerTimeoutNs();
        this.urgentLock = new ReentrantLock(s.sharedChannel());
        this.handler = s.handler() == null ? new MessageHandler() { } : s.handler();
        this.capabilities = s.capabilities();
        this.barrier = s.streams() > 1 && role == Role.DESTINATION ? new Barrier(s.streams()) : null;
        this.claims = role == Role.DESTINATION ? new RoundClaims(layout) : null;
    }

    // ================================================================== lifecycle

    /**
     * Registers a thread, started by {@link #open()}. What it throws fails the connection; a background
     * stream that breaks first waits briefly for the peer's own reason to arrive on the urgent path.
     *
     * @param what names the stream or job in messages (e.g. "background channel 2")
     * @param background true for a background stream's thread (niced by the transport if it likes)
     */
    protected final void thread(String name, String what, boolean background, Body body) {
        synchronized (lifecycle) {
            if (opened) {
                throw new IllegalStateException("threads are registered before open()");
            }
            threads.add(Thread.ofPlatform().daemon().name(name).unstarted(() -> run(what, background, body)));
        }
    }

    /**
     * Hands the connection to its handler ({@code onOpen}), runs {@link #opened()}, then starts the threads.
     * A handler that throws fails and closes the connection, and the failure is thrown.
     */
    protected final void open() {
        backgroundLane = role == Role.DESTINATION ? new DestinationBackgroundLane(this::ensureOpen) : sourceLane();
        try {
            handler.onOpen(this);
            opened();
        } catch (RuntimeException e) {
            TransportException t = e instanceof TransportException te ? te
                    : new TransportException(Kind.HANDLER_FAILED, "the " + side() + "'s message handler failed while the connection opened: " + e, e);
            fail(t, FailureOrigin.LOCAL);
            close();
            throw t;
        }
        synchronized (lifecycle) {
            opened = true;
            liveThreads.set(threads.size());
        }
        threads.forEach(Thread::start);
    }

    /**
     * Names the peer of a stream whose endpoint differs from the urgent one's (a background socket's
     * own address and port), so that its errors name the right connection.
     *
     * @param where the stream, as {@link #thread} and {@link #streamEnded} name it
     */
    protected final void streamPeer(String where, String streamPeer) {
        streamPeers.put(where, streamPeer);
    }

    /** @return the peer of stream {@code where}: its own when known, else the connection's */
    protected final String peerOf(String where) {
        return streamPeers.getOrDefault(where, peer);
    }

    /** Runs after the handler's {@code onOpen} and before the threads start (e.g. hand the handler what the handshake brought). */
    protected void opened() {
    }

    private void run(String name, boolean background, Body body) {
        try {
            body.run();
        } catch (Throwable t) {
            failFrom(name, background, t);
        } finally {
            if (liveThreads.decrementAndGet() == 0) {
                endIfOver();
            }
        }
    }

    /** Turns what a thread threw into the failure (or, after our own close or an orderly end, nothing). */
    private void failFrom(String where, boolean background, Throwable t) {
        if (closed.get() || peerEnded || failure.get() != null) {
            return; // our own close, the peer's orderly end or an earlier failure woke it
        }
        if (t instanceof InterruptedException) {
            Thread.currentThread().interrupt();
            return; // only close() interrupts
        }
        if (background && t instanceof WireException w && role == Role.DESTINATION && verdict.get() == ACKNOWLEDGED) {
            // The migration was acknowledged, so it succeeded: a stray frame on a background stream (a second
            // COMPLETE, pages after COMPLETE) cannot undo that. This stream is no longer read.
            LOG.log(System.Logger.Level.WARNING, "ignored after the completion acknowledgement: " + w.getMessage() + " (" + where
                    + " from " + peerOf(where) + "); " + where + " is no longer read");
            return;
        }
        if (endedInOrder() && (t instanceof IOException || t instanceof TransportException te && te.kind() == Kind.CONNECTION_LOST)) {
            peerEnded();
            return;
        }
        if (t instanceof IOException io) {
            if (background) {
                awaitPeerReason();
            }
            fail(ioFailure(where, io), FailureOrigin.PEER);
        } else if (t instanceof WireException w) {
            fail(new WireException(w.getMessage() + " (" + where + " from " + peerOf(where) + ")"), FailureOrigin.LOCAL);
        } else if (t instanceof TransportException te) {
            fail(te, te.kind() == Kind.PEER_ERROR || te.kind() == Kind.CONNECTION_LOST ? FailureOrigin.PEER : FailureOrigin.LOCAL);
        } else {
            fail(new TransportException(Kind.HANDLER_FAILED, where + " failed: " + t, t), FailureOrigin.LOCAL);
            if (t instanceof Error e && !(t instanceof AssertionError)) {
                throw e;
            }
        }
    }

    /**
     * Turns an I/O error of the medium into the failure to report; override to recognise timeouts.
     *
     * @param where the stream or operation, for the message
     */
    protected TransportException ioFailure(String where, IOException e) {
        return new TransportException(Kind.CONNECTION_LOST, where + " to " + peerOf(where) + " failed: " + e.getMessage(), e);
    }

    /**
     * A stream ended (end of file, image gone, disconnect). Orderly once the migration completed (the urgent
     * stream's end then ends the connection); before that it fails the connection, after waiting briefly on
     * a background stream for the peer's own reason.
     *
     * @param where the stream, for the message
     * @param background whether it is a background stream
     */
    protected final void streamEnded(String where, boolean background) {
        if (closed.get() || failure.get() != null) {
            return;
        }
        if (endedInOrder()) {
            if (!background) {
                peerEnded();
            }
            return;
        }
        if (background) {
            awaitPeerReason();
        }
        fail(new TransportException(Kind.CONNECTION_LOST, "the " + otherSide() + " " + peerOf(where) + " closed the " + where
                + " before the migration completed"), FailureOrigin.PEER);
    }

    /** The peer ended the connection in order after completion: not a failure, but the end. */
    protected final void peerEnded() {
        if (peerEnded || failure.get() != null) {
            return;
        }
        peerEnded = true;
        stopAll();
    }

    private void awaitPeerReason() {
        try {
            failed.await(PEER_REASON_WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Fails the connection once: records the cause, tells the peer and the handler as {@code origin}
     * says, and wakes every thread. Later calls do nothing.
     */
    public final void fail(TransportException cause, FailureOrigin origin) {
        if (role == Role.DESTINATION) {
            verdict.compareAndSet(UNDECIDED, FAILED); // before the failure is visible: no acknowledgement after this
        }
        // Once the failure is visible every thread stops, and the last one releases the streams: it first waits
        // (briefly, endIfOver) until the peer has been told why, or an ERROR written after the release never leaves.
        failing.incrementAndGet();
        try {
            if (!failure.compareAndSet(null, cause)) {
                return;
            }
            failed.countDown();
            TransportEvents.connectionFailed(role.name(), peer, cause.kind().name(), origin.name(), cause.getMessage());
            if (origin.tellsPeer()) {
                tellPeer(cause);
            }
        } finally {
            failing.decrementAndGet();
        }
        stopAll();
        if (origin.notifiesHandler() && !completed && errorReported.compareAndSet(false, true)) {
            try {
                handler.onError(cause);
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
                LOG.log(System.Logger.Level.WARNING, "the message handler's onError threw: " + e, e);
            }
        }
        if (liveThreads.get() == 0) {
            endIfOver();
        }
    }

    /**
     * Waits until no {@link #fail} is still telling the peer why, at most {@link #TELL_WAIT_MS}; a write that
     * takes longer (a peer that stopped reading, its buffers full) is woken by shutting the streams down, so the
     * release that follows never waits on a peer.
     */
    private void awaitPeerTold() {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TELL_WAIT_MS);
        while (failing.get() > 0) {
            if (System.nanoTime() - deadline > 0) {
                stopAll();
                return;
            }
            java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(100));
        }
    }

    private void tellPeer(TransportException cause) {
        try {
            // Another thread may be stuck writing the urgent path; do not wait for it long.
            if (!urgentLock.tryLock(100, TimeUnit.MILLISECONDS)) {
                cause.addSuppressed(new TransportException(Kind.TIMEOUT, "the " + otherSide()
                        + " was not told why: the urgent path stayed busy for 100 ms"));
                return;
            }
            try {
                if (!urgentClosed) {
                    writeUrgent(FrameType.ERROR, 0, 0, 0, MemorySegment.ofArray(errorText(cause.getMessage())));
                }
            } finally {
                urgentLock.unlock();
            }
        } catch (IOException | RuntimeException e) {
            cause.addSuppressed(e); // the peer may be gone already; keep the detail with the cause
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** @return the UTF-8 text of an ERROR, cut to the wire limit */
    public static byte[] errorText(String message) {
        byte[] b = message.getBytes(StandardCharsets.UTF_8);
        return b.length <= Wire.MAX_ERROR_BYTES ? b : java.util.Arrays.copyOf(b, Wire.MAX_ERROR_BYTES);
    }

    @Override
    public void abort(String reason) {
        fail(new TransportException(Kind.CLOSED, "aborted by the " + side() + ": " + reason), FailureOrigin.APPLICATION);
        close();
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        if (!completed) {
            fail(new TransportException(Kind.CLOSED, "the " + side() + " closed the connection before the migration completed"),
                    FailureOrigin.APPLICATION);
        } else {
            stopAll();
        }
        Thread self = Thread.currentThread();
        synchronized (lifecycle) { // never interrupt a thread that is releasing
            if (!released) {
                threads.stream().filter(t -> t != self).forEach(Thread::interrupt); // a handler blocked in a callback
            }
        }
        for (Thread t : threads) {
            if (t == self) {
                continue;
            }
            try {
                t.join(JOIN_MS);
                if (t.isAlive()) {
                    LOG.log(System.Logger.Level.WARNING, "thread " + t.getName() + " of " + this + " did not end within " + JOIN_MS
                            + " ms of close (stuck in a message handler?); its resources are released when it ends");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        endIfOver();
    }

    /** Once the connection has ended and no thread runs: release (once), then tell the handler (once). */
    private void endIfOver() {
        if (failing.get() > 0 && isClosed()) {
            awaitPeerTold();
        }
        synchronized (lifecycle) {
            if (ended || liveThreads.get() > 0 || !isClosed()) {
                return;
            }
            ended = true;
            released = true;
            boolean interrupted = Thread.interrupted(); // releasing may join helper threads
            urgentLock.lock();
            try {
                urgentClosed = true;
                release();
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "releasing " + this + " failed: " + e, e);
            } finally {
                urgentLock.unlock();
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }
        try {
            handler.onClosed(failure.get());
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "the message handler's onClosed threw: " + e, e);
        }
    }

    private void stopAll() {
        if (barrier != null) {
            TransportException f = failure.get();
            barrier.abort(f != null ? f : new TransportException(Kind.CLOSED, "connection closed"));
        }
        shutdown();
    }

    /** Wakes every thread of the connection (sockets shut down, queues closed, streams revoked). Idempotent; any thread. */
    protected abstract void shutdown();

    /** Frees every resource, once, after every thread has stopped (and with the urgent lock held). */
    protected abstract void release();

    // ================================================================== Connection

    @Override
    public Role role() {
        return role;
    }

    @Override
    public String peer() {
        return peer;
    }

    @Override
    public RamLayout layout() {
        return layout;
    }

    @Override
    public Set<Capability> capabilities() {
        return capabilities;
    }

    @Override
    public Lane background() {
        return backgroundLane;
    }

    /** @return the source's background lane (made once, in {@link #open()}) */
    protected abstract SourceLane sourceLane();

    @Override
    public Lane urgent() {
        return urgentLane;
    }

    @Override
    public ConnectionStats stats() {
        return stats;
    }

    @Override
    public TransportException failure() {
        return failure.get();
    }

    @Override
    public boolean isClosed() {
        return closed.get() || peerEnded || failure.get() != null;
    }

    /** @return true once the migration completed, or the acknowledgement is being written */
    protected final boolean endedInOrder() {
        return completed || acknowledging;
    }

    /** @return true while no failure, close or end happened */
    protected final boolean running() {
        return !isClosed();
    }

    /** @return the exception a send throws now, or null while open */
    protected final TransportException checkOpen() {
        TransportException f = failure.get();
        if (f != null) {
            return new TransportException(f.kind(), f.getMessage(), f);
        }
        if (closed.get()) {
            return new TransportException(Kind.CLOSED, "connection closed");
        }
        if (peerEnded) {
            return new TransportException(Kind.CLOSED, "the " + otherSide() + " " + peer + " closed the connection after the migration completed");
        }
        return null;
    }

    /** Throws {@link #checkOpen()}'s exception, if any. */
    protected final void ensureOpen() {
        TransportException e = checkOpen();
        if (e != null) {
            throw e;
        }
    }

    protected final String side() {
        return role == Role.SOURCE ? "source" : "destination";
    }

    protected final String otherSide() {
        return role == Role.SOURCE ? "destination" : "source";
    }

    // ================================================================== liveness

    /** Something arrived on the urgent path. */
    protected final void noteReceived(long now) {
        lastReceivedNs = now;
    }

    /** @throws TransportException {@code TIMEOUT} when nothing arrived for the peer timeout */
    protected final void checkPeerTimeout(long now) {
        long silent = now - lastReceivedNs;
        if (silent > peerTimeoutNs) {
            throw new TransportException(Kind.TIMEOUT, "no frame from the " + otherSide() + " " + peer + " for "
                    + TimeUnit.NANOSECONDS.toMillis(silent) + " ms (peer timeout " + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms)");
        }
    }

    /** Sends a heartbeat when nothing went out for the heartbeat interval and no writer is busy. */
    protected final void maybeHeartbeat(long now) {
        if (now - lastSentNs < heartbeatNs || !urgentLock.tryLock()) {
            return; // recent traffic, or a writer is busy: either way the peer hears from us
        }
        IOException broken = null;
        try {
            if (!urgentClosed && failure.get() == null && writeHeartbeat(now)) {
                lastSentNs = now;
            }
        } catch (IOException e) {
            broken = e;
        } finally {
            urgentLock.unlock();
        }
        if (broken != null) {
            if (endedInOrder()) {
                peerEnded(); // after completion the peer may close at any time: its end, not a failure
            } else {
                fail(ioFailure("heartbeat", broken), FailureOrigin.PEER);
            }
        }
    }

    /**
     * Writes a heartbeat (the urgent lock is held); override where writing may wait (it must not).
     *
     * @return false when it could not go now
     */
    protected boolean writeHeartbeat(long now) throws IOException {
        writeUrgent(FrameType.HEARTBEAT, 0, now, 0, null);
        return true;
    }

    // ================================================================== receiving (for FrameDispatcher)

    /** @return the handler (never null) */
    protected final MessageHandler handler() {
        return handler;
    }

    /** Runs a handler call; anything but a {@link TransportException} becomes {@code HANDLER_FAILED}. */
    final void deliver(Runnable call) {
        try {
            call.run();
        } catch (TransportException e) {
            throw e;
        } catch (RuntimeException e) {
            // A handler refuses what it cannot take with IllegalArgumentException / IllegalStateException and a sentence:
            // that sentence is the reason (found by the hostile source: "java.lang.IllegalArgumentException: unknown control
            // message ..." reached the source); anything else is a fault, named by its class.
            boolean refusal = (e instanceof IllegalArgumentException || e instanceof IllegalStateException) && e.getMessage() != null;
            throw new TransportException(Kind.HANDLER_FAILED, "the " + side() + "'s message handler failed: "
                    + (refusal ? e.getMessage() : e.toString()), e);
        }
    }

    /** A background stream reached round end {@code round}: the handler hears it once every stream has. */
    final void roundEnd(int stream, long round) {
        if (barrier == null) {
            endRound(round);
        } else {
            barrier.arrive(stream, FrameType.ROUND_END, round, () -> endRound(round));
        }
        roundEndDelivered(round);
    }

    /** Every stream is at round end {@code round} (or there is one stream): checks the order, starts a new round, tells the handler. */
    private void endRound(long round) {
        if (round <= lastRound) {
            throw new WireException("invalid ROUND_END frame: round " + round + " after round " + lastRound
                    + " (round numbers must increase)");
        }
        lastRound = round;
        if (claims != null) {
            claims.clear();
        }
        deliver(() -> handler.onRoundEnd(round));
    }

    /** Destination, background lane: claims a page range for this round (before any payload byte lands). */
    final void claim(int type, int regionId, long first, long count, int stream) {
        if (claims != null) {
            claims.claim(type, regionId, first, count, stream);
        }
    }

    /** After the handler heard round end {@code round} (RDMA acknowledges it). Runs on each stream's thread. */
    protected void roundEndDelivered(long round) {
    }

    /** A background stream reached COMPLETE (its page count checked): the handler hears it once every stream has. */
    final void streamComplete(int stream) {
        if (barrier == null) {
            deliver(handler::onComplete);
        } else {
            barrier.arrive(stream, FrameType.COMPLETE, 0, () -> deliver(handler::onComplete));
        }
    }

    /** Source: the destination acknowledged completion. */
    final void acknowledged() {
        completed = true;
        deliver(handler::onComplete);
    }

    // ================================================================== lanes

    /**
     * Writes one whole urgent frame; the urgent lock is held. {@code payload} is a CONTROL's or ERROR's bytes
     * (valid during the call), else null.
     */
    protected abstract void writeUrgent(int type, int regionId, long first, long count, MemorySegment payload) throws IOException;

    /**
     * Writes pages {@code [first, first + count)} of a region as one urgent frame (or, where the medium
     * decides, the first part of them); the urgent lock is held.
     *
     * @return pages written, 1..count
     */
    protected abstract int writeUrgentPages(RamRegion region, int regionId, long first, int count) throws IOException;

    /** Takes the urgent lock; override where waiting must make progress on the medium (RDMA completions). */
    protected void lockUrgent() {
        urgentLock.lock();
    }

    /** After an urgent write (e.g. to wake a poller); the urgent lock is held. */
    protected void urgentWritten() {
    }

    /** Urgent flush: sends are handed over before they return; override to wait for the medium. */
    protected void flushUrgent() {
    }

    /** @return the region, after checking the id and the page range (IndexOutOfBoundsException naming both) */
    protected final RamRegion checkedRegion(int regionId, long firstPage, long pageCount) {
        if (regionId < 0 || regionId >= layout.regionCount()) {
            throw new IndexOutOfBoundsException("region id " + regionId + " outside 0.." + (layout.regionCount() - 1));
        }
        RamRegion r = layout.region(regionId);
        if (pageCount < 1 || firstPage < 0 || firstPage >= r.pageCount() || pageCount > r.pageCount() - firstPage) {
            throw new IndexOutOfBoundsException("pages [" + firstPage + ", " + firstPage + "+" + pageCount + ") outside region "
                    + regionId + " '" + r.name() + "' of " + r.pageCount() + " pages");
        }
        return r;
    }

    /** @throws IllegalStateException when this side does not send {@code what} */
    protected final void requireRole(Role expected, String what) {
        if (role != expected) {
            throw new IllegalStateException(what + " is sent by the " + expected.name().toLowerCase() + ", and this is the " + side());
        }
    }

    /** @return a copy of a control payload, after checking its size */
    protected static byte[] controlCopy(MemorySegment payload) {
        if (payload.byteSize() > Lane.MAX_CONTROL_BYTES) {
            throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + Lane.MAX_CONTROL_BYTES);
        }
        return payload.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    /** Bytes a page frame of {@code pages} pages takes on the wire, for statistics. */
    protected final long pageFrameBytes(RamRegion r, long pages) {
        return FrameHeader.LENGTH + pages * r.pageSize() + (dataDigest ? Wire.DIGEST_LENGTH : 0);
    }

    @FunctionalInterface
    private interface Write {
        void run() throws IOException;
    }

    /** The urgent lane: written by the calling thread under {@link #urgentLock}, nothing queued ahead of it. */
    private final class UrgentLane implements Lane {
        @Override
        public LaneKind kind() {
            return LaneKind.URGENT;
        }

        private void locked(Write w, long pages, long bytes) {
            lockUrgent();
            try {
                ensureOpen();
                if (urgentClosed) {
                    throw new TransportException(Kind.CLOSED, "the urgent lane is closed");
                }
                w.run();
                lastSentNs = System.nanoTime();
                stats.onSent(pages, bytes, true);
                urgentWritten();
            } catch (IOException e) {
                TransportException t = ioFailure("urgent send", e);
                fail(t, FailureOrigin.PEER);
                throw new TransportException(t.kind(), t.getMessage(), t);
            } finally {
                urgentLock.unlock();
            }
        }

        @Override
        public long offerPages(int regionId, long firstPage, long pageCount) {
            sendPages(regionId, firstPage, pageCount);
            return pageCount;
        }

        @Override
        public void sendPages(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "page data");
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            long perFrame = maxPayload / r.pageSize();
            int[] written = new int[1];
            for (long done = 0; done < pageCount; done += written[0]) {
                long first = firstPage + done;
                int n = (int) Math.min(pageCount - done, perFrame);
                locked(() -> {
                    written[0] = writeUrgentPages(r, regionId, first, n);
                    if (written[0] < 1 || written[0] > n) {
                        throw new IllegalStateException("the transport wrote " + written[0] + " of " + n + " urgent pages");
                    }
                }, n, pageFrameBytes(r, n));
            }
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a zero run");
            checkedRegion(regionId, firstPage, pageCount);
            locked(() -> writeUrgent(FrameType.ZERO_RUN, regionId, firstPage, pageCount, null), 0, FrameHeader.LENGTH);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a skip run");
            checkedRegion(regionId, firstPage, pageCount);
            locked(() -> writeUrgent(FrameType.SKIP_RUN, regionId, firstPage, pageCount, null), 0, FrameHeader.LENGTH);
        }

        @Override
        public void sendRoundEnd(long round) {
            throw new IllegalStateException("round ends go on the background lane");
        }

        @Override
        public void sendPageRequest(int regionId, long firstPage, int pageCount) {
            requireRole(Role.DESTINATION, "a page request");
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            if (pageCount > maxPayload / r.pageSize()) {
                throw new IllegalArgumentException("page request of " + pageCount + " pages exceeds " + maxPayload / r.pageSize()
                        + " (one frame of " + maxPayload + " bytes)");
            }
            locked(() -> writeUrgent(FrameType.PAGE_REQUEST, regionId, firstPage, pageCount, null), 0, FrameHeader.LENGTH);
        }

        @Override
        public void sendControl(MemorySegment payload) {
            if (payload.byteSize() > MAX_CONTROL_BYTES) {
                throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + MAX_CONTROL_BYTES);
            }
            locked(() -> writeUrgent(FrameType.CONTROL, 0, 0, 0, payload), 0, FrameHeader.LENGTH + payload.byteSize());
        }

        @Override
        public void sendComplete() {
            requireRole(Role.DESTINATION, "the completion acknowledgement (the source completes on the background lane)");
            locked(() -> {
                // One verdict: a failure decided first means no acknowledgement; once decided here, no failure
                // turns the migration into a failed one. The source may read the acknowledgement and close before
                // this thread returns: from here on an end of stream is orderly.
                if (!verdict.compareAndSet(UNDECIDED, ACKNOWLEDGED)) {
                    ensureOpen();
                    throw new TransportException(Kind.CLOSED, "the migration failed before it could be acknowledged");
                }
                acknowledging = true;
                writeUrgent(FrameType.COMPLETE, 0, 0, 0, null);
                completed = true;
            }, 0, FrameHeader.LENGTH);
        }

        @Override
        public void flush() {
            ensureOpen(); // urgent sends are handed over before they return
            flushUrgent();
        }
    }
}
