package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.ConnectionStats;
import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.linux.ThreadTuning;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.FrameValidator;
import io.pagewire.transport.spi.wire.WireException;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * One pagewire connection over Aeron: an urgent stream each way and one background stream from source to
 * destination, each its own exclusive publication and image.
 *
 * <h2>Threads</h2>
 * <ul>
 * <li>Both sides: an urgent thread polls the peer's urgent stream, calls the handler, sends heartbeats, and watches
 *     the peer timeout and the state of every stream.</li>
 * <li>Destination: a background thread (niced) polls the background stream and places pages.</li>
 * <li>Source: no background thread. The producer's {@code offerPages} claims space in the background publication and
 *     copies the pages straight from guest RAM into it; the bulk media driver sends them.</li>
 * </ul>
 * Urgent sends are written by the calling thread under {@link #urgentLock}, which background sends never take.
 *
 * <h2>Failure and release</h2>
 * The first failure wins ({@link #fail}): it is recorded, the peer is told with an ERROR on the urgent stream when
 * the cause is local, and the handler hears it once. Every loop and wait checks the failure, so every thread ends;
 * the last thread to end (or {@link #close}) releases the publications, subscriptions and driver leases. A failed
 * connection revokes its background publication (the peer's image goes at once); otherwise streams close normally,
 * so an ERROR or the completion acknowledgement still reaches the peer.
 */
final class AeronConnection implements Connection {
    private static final System.Logger LOG = System.getLogger(AeronConnection.class.getName());
    /** After the background stream ends without COMPLETE, how long the urgent stream gets to deliver the peer's ERROR. */
    private static final long END_GRACE_NS = TimeUnit.MILLISECONDS.toNanos(500);

    /** The Aeron objects of one connection; all are released by {@link #release()}. */
    record Streams(Drivers.Lease urgentLease, Drivers.Lease bulkLease, ExclusivePublication urgentPub, Subscription urgentSub,
                   Image urgentImage, ExclusivePublication backgroundPub, Subscription backgroundSub, Image backgroundImage) {
    }

    private final Role role;
    private final String peer;
    private final RamLayout layout;
    private final AeronOptions options;
    private final int maxPayload;
    private final MessageHandler handler;
    private final ConnectionStats stats;
    private final long heartbeatNs;
    private final long peerTimeoutNs;
    private final long stallTimeoutNs;
    private final Set<Capability> capabilities;
    private final Streams streams;

    private final AtomicReference<TransportException> failure = new AtomicReference<>();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final AtomicBoolean released = new AtomicBoolean();
    /** Held while releasing; {@link #close} takes it to interrupt threads, so no thread is interrupted mid-release. */
    private final Object releaseLock = new Object();
    /** Source: the destination acknowledged COMPLETE. Destination: it sent the acknowledgement. */
    private volatile boolean completed;
    /** Destination: COMPLETE arrived on the background stream. */
    private volatile boolean backgroundComplete;
    private volatile long lastReceivedNs = System.nanoTime();
    private volatile long lastSentNs = System.nanoTime();
    private long disconnectedSinceNs; // urgent thread only
    private final List<Thread> threads = new ArrayList<>();
    private final AtomicInteger liveThreads = new AtomicInteger();
    private final Consumer<Throwable> fatalListener = this::onDriverFatal;

    private final ReentrantLock urgentLock = new ReentrantLock();
    private final FrameSender urgentSender;  // guarded by urgentLock
    private boolean urgentClosed;            // guarded by urgentLock
    private final FrameSender backgroundSender; // source: the producer thread's
    private final FrameReader urgentReader;
    private final FrameReader backgroundReader; // destination

    private final Lane backgroundLane;
    private final Lane urgentLane;

    AeronConnection(Role role, String peer, RamLayout layout, AeronOptions options, boolean dataDigest, int maxPayload,
                    MessageHandler handler, long heartbeatNs, long peerTimeoutNs, Streams streams) {
        this.role = role;
        this.peer = peer;
        this.layout = layout;
        this.options = options;
        this.maxPayload = maxPayload;
        this.handler = handler == null ? new MessageHandler() { } : handler;
        this.heartbeatNs = heartbeatNs;
        this.peerTimeoutNs = peerTimeoutNs;
        this.stallTimeoutNs = TimeUnit.MILLISECONDS.toNanos(options.stallTimeoutMs());
        this.streams = streams;
        EnumSet<Capability> caps = EnumSet.of(Capability.SEPARATE_URGENT_PATH);
        if (dataDigest) {
            caps.add(Capability.DATA_DIGEST);
        }
        this.capabilities = Set.copyOf(caps);
        FrameValidator validator = new FrameValidator(layout.descriptors(), maxPayload, dataDigest);
        this.urgentSender = new FrameSender(streams.urgentPub(), dataDigest, maxPayload, streams.urgentPub().termBufferLength() / 2,
                this::awaitUrgent);
        this.urgentReader = new FrameReader(layout, validator, role, LaneKind.URGENT, new Dispatch(LaneKind.URGENT));
        if (role == Role.SOURCE) {
            this.backgroundSender = new FrameSender(streams.backgroundPub(), dataDigest, maxPayload, options.pubWindow(),
                    this::awaitBackgroundSplit);
            this.backgroundReader = null;
            ExclusivePublication bg = streams.backgroundPub();
            // Offered, unsent data: at most the publication window, plus one message that may overshoot its limit.
            this.stats = new ConnectionStats((long) options.pubWindow() + bg.maxMessageLength());
            this.backgroundLane = new SourceBackgroundLane();
        } else {
            this.backgroundSender = null;
            this.backgroundReader = new FrameReader(layout, validator, role, LaneKind.BACKGROUND, new Dispatch(LaneKind.BACKGROUND));
            this.stats = new ConnectionStats(0);
            this.backgroundLane = new io.pagewire.transport.spi.DestinationBackgroundLane(this::ensureOpen);
        }
        this.urgentLane = new UrgentLane();
    }

    /** Starts the threads; called once the handshake is done. */
    void start() {
        streams.urgentLease().onFatal(fatalListener);
        streams.bulkLease().onFatal(fatalListener);
        String side = role == Role.SOURCE ? "src" : "dst";
        threads.add(Thread.ofPlatform().daemon().name("pagewire-aeron-" + side + "-urgent").unstarted(this::urgentLoop));
        if (role == Role.DESTINATION) {
            threads.add(Thread.ofPlatform().daemon().name("pagewire-aeron-dst-bg").unstarted(this::backgroundLoop));
        }
        liveThreads.set(threads.size());
        threads.forEach(Thread::start);
    }

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
        return closed.get() || failure.get() != null;
    }

    @Override
    public void abort(String reason) {
        fail(new TransportException(Kind.CLOSED, "aborted by the " + side() + ": " + reason), true, false);
        close();
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        if (!completed) {
            fail(new TransportException(Kind.CLOSED, "the " + side() + " closed the connection before the migration completed"),
                    true, false);
        }
        Thread self = Thread.currentThread();
        synchronized (releaseLock) { // never interrupt a thread while it releases (it joins driver threads)
            for (Thread t : threads) {
                if (t != self && !released.get()) {
                    t.interrupt(); // a handler blocked in a callback
                }
            }
        }
        boolean calledFromOwnThread = false;
        for (Thread t : threads) {
            if (t == self) {
                calledFromOwnThread = true;
                continue;
            }
            try {
                t.join(TimeUnit.SECONDS.toMillis(5));
                if (t.isAlive()) {
                    LOG.log(System.Logger.Level.WARNING, "aeron: thread " + t.getName() + " of " + this
                            + " did not end within 5 s of close (stuck in a message handler?); releasing its streams anyway");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        if (!calledFromOwnThread) {
            release();
        } // else: this thread releases as it ends (threadExit)
    }

    private String side() {
        return role == Role.SOURCE ? "source" : "destination";
    }

    private String otherSide() {
        return role == Role.SOURCE ? "destination" : "source";
    }

    // ================================================================== failure

    /**
     * Fails the connection once: records the cause, tells the peer (best effort) when the cause is local, and
     * reports to the handler. Threads and waits see the failure and end.
     */
    void fail(TransportException cause, boolean tellPeer, boolean notifyHandler) {
        if (!failure.compareAndSet(null, cause)) {
            return;
        }
        if (tellPeer) {
            sendErrorBestEffort(cause.getMessage());
        }
        if (notifyHandler && !completed) {
            try {
                handler.onError(cause);
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
                LOG.log(System.Logger.Level.WARNING, "aeron: the message handler's onError threw: " + e, e);
            }
        }
        if (threads.isEmpty() || liveThreads.get() == 0) {
            release();
        }
    }

    private void onDriverFatal(Throwable e) {
        fail(new TransportException(Kind.CONNECTION_LOST, "aeron: the media driver of " + this + " stopped answering: " + e, e),
                false, true);
    }

    private void sendErrorBestEffort(String message) {
        try {
            // Another thread may be stuck writing the urgent stream; do not wait for it long.
            if (!urgentLock.tryLock(100, TimeUnit.MILLISECONDS)) {
                return;
            }
            try {
                if (urgentClosed) {
                    return;
                }
                MemorySegment text = MemorySegment.ofArray(Handshake.errorText(message));
                long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(100);
                long r;
                while ((r = urgentSender.tryPayload(FrameType.ERROR, text)) == Publication.BACK_PRESSURED || r == Publication.ADMIN_ACTION) {
                    if (System.nanoTime() - deadline > 0) {
                        break;
                    }
                    Thread.onSpinWait();
                }
                if (r < 0) {
                    TransportException f = failure.get();
                    if (f != null) {
                        f.addSuppressed(new TransportException(Kind.CONNECTION_LOST, "could not tell the " + otherSide()
                                + " why: urgent stream " + code(r)));
                    }
                }
            } finally {
                urgentLock.unlock();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private boolean running() {
        return failure.get() == null && !closed.get();
    }

    private TransportException checkOpen() {
        TransportException f = failure.get();
        if (f != null) {
            return new TransportException(f.kind(), f.getMessage(), f);
        }
        if (closed.get()) {
            return new TransportException(Kind.CLOSED, "connection closed");
        }
        return null;
    }

    private void ensureOpen() {
        TransportException e = checkOpen();
        if (e != null) {
            throw e;
        }
    }

    /** A publication reported a code that ends the stream: fail and return the exception to throw. */
    private TransportException streamLost(String stream, long code) {
        TransportException f = failure.get();
        if (f == null) {
            Kind kind = code == Publication.CLOSED && closed.get() ? Kind.CLOSED : Kind.CONNECTION_LOST;
            fail(new TransportException(kind, "aeron: the " + stream + " to the " + otherSide() + " " + peer + " failed: " + code(code)
                    + (code == Publication.NOT_CONNECTED ? " (its subscriber stopped answering: the " + otherSide() + " is gone)" : "")),
                    code != Publication.NOT_CONNECTED, true);
        }
        return checkOpen();
    }

    static String code(long code) {
        if (code == Publication.NOT_CONNECTED) {
            return "NOT_CONNECTED";
        } else if (code == Publication.BACK_PRESSURED) {
            return "BACK_PRESSURED";
        } else if (code == Publication.ADMIN_ACTION) {
            return "ADMIN_ACTION";
        } else if (code == Publication.CLOSED) {
            return "CLOSED";
        } else if (code == Publication.MAX_POSITION_EXCEEDED) {
            return "MAX_POSITION_EXCEEDED";
        }
        return Long.toString(code);
    }

    // ================================================================== threads

    private void urgentLoop() {
        String why = ThreadTuning.urgentThread(Drivers.URGENT_SLICE_NS);
        if (why != null) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: urgent thread not tuned: " + why);
        }
        IdleStrategy idle = new ActivityIdleStrategy(ActivityIdleStrategy.URGENT);
        Image image = streams.urgentImage();
        try {
            while (running()) {
                int work = urgentReader.poll(image, 16);
                long now = System.nanoTime();
                if (work > 0) {
                    lastReceivedNs = now;
                }
                maybeHeartbeat(now);
                if (now - lastReceivedNs > peerTimeoutNs) {
                    throw new TransportException(Kind.TIMEOUT, "no message from the " + otherSide() + " " + peer + " for "
                            + TimeUnit.NANOSECONDS.toMillis(now - lastReceivedNs) + " ms (peer timeout "
                            + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms)");
                }
                if (work == 0 && !checkStreams(image)) {
                    return;
                }
                idle.idle(work);
            }
        } catch (WireException e) {
            fail(new WireException(e.getMessage() + " (urgent stream from " + peer + ")"), true, true);
        } catch (TransportException e) {
            fail(e, e.kind() != Kind.CONNECTION_LOST, true);
        } catch (RuntimeException e) {
            fail(new TransportException(Kind.HANDLER_FAILED, "aeron: the urgent thread failed: " + e, e), true, true);
        } finally {
            threadExit();
        }
    }

    /** @return false when the urgent stream ended in order (after completion) */
    private boolean checkStreams(Image image) {
        if (image.isClosed() || image.isEndOfStream()) {
            if (completed) {
                return false;
            }
            String where = urgentReader.midFrame() ? " in the middle of a frame" : "";
            throw new TransportException(Kind.CONNECTION_LOST, "the " + otherSide() + " " + peer + " closed the urgent stream" + where
                    + " before the migration completed");
        }
        String lost = null;
        if (!streams.urgentPub().isConnected()) {
            lost = "the urgent stream";
        } else if (role == Role.SOURCE && !streams.backgroundPub().isConnected()) {
            lost = "the background stream";
        }
        if (lost == null || completed) {
            disconnectedSinceNs = 0;
            return true;
        }
        // A peer that fails sends ERROR on its urgent stream and then closes its subscriptions; our publication
        // may see that before our urgent thread has read the ERROR. Keep reading for a moment so the reason wins.
        long now = System.nanoTime();
        if (disconnectedSinceNs == 0) {
            disconnectedSinceNs = now;
        } else if (now - disconnectedSinceNs > END_GRACE_NS) {
            throw new TransportException(Kind.CONNECTION_LOST, "the " + otherSide() + " " + peer + " stopped acknowledging " + lost
                    + " (its Aeron subscription went away)");
        }
        return true;
    }

    private void backgroundLoop() {
        String why = ThreadTuning.nice(options.backgroundNice());
        if (why != null) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: background receiver keeps its nice value: " + why);
        }
        IdleStrategy idle = new ActivityIdleStrategy(ActivityIdleStrategy.BULK);
        Image image = streams.backgroundImage();
        try {
            while (running()) {
                int work = backgroundReader.poll(image, 64);
                if (work > 0) {
                    ActivityIdleStrategy.BULK.touch();
                }
                if (work == 0 && (image.isClosed() || image.isEndOfStream())) {
                    if (!backgroundComplete) {
                        backgroundEnded();
                    }
                    return;
                }
                idle.idle(work);
            }
        } catch (WireException e) {
            fail(new WireException(e.getMessage() + " (background stream from " + peer + ")"), true, true);
        } catch (TransportException e) {
            fail(e, true, true);
        } catch (RuntimeException e) {
            fail(new TransportException(Kind.HANDLER_FAILED, "aeron: the background thread failed: " + e, e), true, true);
        } finally {
            threadExit();
        }
    }

    /** The background stream ended before COMPLETE: give the urgent stream a moment to bring the reason, then fail. */
    private void backgroundEnded() {
        long deadline = System.nanoTime() + END_GRACE_NS;
        IdleStrategy idle = new BackoffIdleStrategy(1, 1, TimeUnit.MICROSECONDS.toNanos(100), TimeUnit.MILLISECONDS.toNanos(1));
        while (running() && System.nanoTime() - deadline < 0) {
            idle.idle(); // waiting for a condition (a failure reported by the urgent thread) with a deadline
        }
        String where = backgroundReader.midFrame() ? " in the middle of a frame (truncated stream)" : "";
        fail(new TransportException(Kind.CONNECTION_LOST, "the " + otherSide() + " " + peer + " closed the background stream" + where
                + " before the migration completed"), false, true);
    }

    private void threadExit() {
        if (liveThreads.decrementAndGet() == 0 && !running()) {
            release();
        }
    }

    private void maybeHeartbeat(long now) {
        if (now - lastSentNs < heartbeatNs || !urgentLock.tryLock()) {
            return; // recent traffic, or a writer is busy: either way the peer hears from us
        }
        try {
            if (!urgentClosed) {
                long r = urgentSender.tryHeaderOnly(FrameType.HEARTBEAT, 0, now, 0);
                if (r > 0) {
                    lastSentNs = now;
                } else if (r != Publication.BACK_PRESSURED && r != Publication.ADMIN_ACTION) {
                    throw streamLost("urgent stream", r);
                }
            }
        } finally {
            urgentLock.unlock();
        }
    }

    /** Releases every stream and lease, once. */
    private void release() {
        synchronized (releaseLock) {
            if (!released.compareAndSet(false, true)) {
                return;
            }
            boolean interrupted = Thread.interrupted();
            try {
                releaseStreams();
            } finally {
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    private void releaseStreams() {
        streams.urgentLease().removeFatalListener(fatalListener);
        streams.bulkLease().removeFatalListener(fatalListener);
        boolean failed = failure.get() != null && !completed;
        List<RuntimeException> errors = new ArrayList<>();
        urgentLock.lock();
        try {
            urgentClosed = true;
            closeQuietly(streams.urgentPub()::close, errors); // normal close: a last ERROR or COMPLETE still reaches the peer
        } finally {
            urgentLock.unlock();
        }
        if (streams.backgroundPub() != null) {
            closeQuietly(failed ? streams.backgroundPub()::revoke : streams.backgroundPub()::close, errors);
        }
        closeQuietly(streams.urgentSub()::close, errors);
        if (streams.backgroundSub() != null) {
            closeQuietly(streams.backgroundSub()::close, errors);
        }
        closeQuietly(streams.urgentLease()::close, errors);
        closeQuietly(streams.bulkLease()::close, errors);
        if (!errors.isEmpty()) {
            TransportException f = failure.get();
            for (RuntimeException e : errors) {
                if (f != null) {
                    f.addSuppressed(e);
                }
                LOG.log(System.Logger.Level.DEBUG, "aeron: releasing " + this + ": " + e, e);
            }
        }
    }

    /** Runs a close step; its failure (a driver already gone) is collected for the log and the connection's failure. */
    private static void closeQuietly(Runnable close, List<RuntimeException> errors) {
        try {
            close.run();
        } catch (RuntimeException e) {
            errors.add(e);
        }
    }

    // ================================================================== waits

    /** Waits for the urgent stream between retries: at most the peer timeout (a peer that reads nothing is gone). */
    private void awaitUrgent(long code, long sinceNs) {
        ensureOpen();
        if (System.nanoTime() - sinceNs > peerTimeoutNs) {
            TransportException t = new TransportException(Kind.TIMEOUT, "aeron: the urgent stream to the " + otherSide() + " " + peer
                    + " stayed back-pressured for " + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms (peer timeout)");
            fail(t, false, true);
            throw new TransportException(t.kind(), t.getMessage(), t);
        }
        Thread.onSpinWait();
        if (System.nanoTime() - sinceNs > TimeUnit.MICROSECONDS.toNanos(50)) {
            java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(5));
        }
    }

    /** Waits between the messages of a split background frame. */
    private void awaitBackgroundSplit(long code, long sinceNs) {
        ensureOpen();
        checkStall(sinceNs);
        java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(20));
    }

    private void checkStall(long sinceNs) {
        if (stallTimeoutNs > 0 && System.nanoTime() - sinceNs > stallTimeoutNs) {
            TransportException t = new TransportException(Kind.TIMEOUT, "aeron: the background stream to the " + otherSide() + " " + peer
                    + " made no progress for " + TimeUnit.NANOSECONDS.toMillis(stallTimeoutNs) + " ms although the "
                    + otherSide() + " answers (it stopped consuming; see stall-timeout-ms)");
            fail(t, true, true);
            throw new TransportException(t.kind(), t.getMessage(), t);
        }
    }

    // ================================================================== receiving

    /** Routes validated frames of one lane to the handler. Runs on that lane's thread. */
    private final class Dispatch implements FrameReader.Sink {
        private final LaneKind lane;
        private final boolean urgent;

        Dispatch(LaneKind lane) {
            this.lane = lane;
            this.urgent = lane == LaneKind.URGENT;
        }

        @Override
        public void onFrame(FrameHeader h, MemorySegment payload) {
            if (failure.get() != null) {
                return; // nothing after a failure reaches the handler
            }
            if (urgent && h.type() != FrameType.HEARTBEAT) {
                ActivityIdleStrategy.URGENT.touch();
            }
            try {
                switch (h.type()) {
                    case FrameType.ZERO_RUN -> {
                        stats.onReceived(0, FrameHeader.LENGTH, urgent);
                        handler.onZeroRun(lane, h.region(), h.first(), h.count());
                    }
                    case FrameType.SKIP_RUN -> {
                        stats.onReceived(0, FrameHeader.LENGTH, urgent);
                        handler.onSkipRun(lane, h.region(), h.first(), h.count());
                    }
                    case FrameType.ROUND_END -> handler.onRoundEnd(h.first()); // one background stream: in order by itself
                    case FrameType.PAGE_REQUEST -> {
                        stats.onReceived(0, FrameHeader.LENGTH, true);
                        handler.onPageRequest(h.region(), h.first(), (int) h.count());
                    }
                    case FrameType.COMPLETE -> {
                        if (role == Role.DESTINATION) {
                            long got = backgroundReader.pagesReceived();
                            if (got != h.count()) {
                                throw new WireException("COMPLETE on the background stream says " + h.count()
                                        + " pages were sent on it, but " + got + " arrived");
                            }
                            backgroundReader.end();
                            backgroundComplete = true;
                        } else {
                            completed = true;
                        }
                        handler.onComplete();
                    }
                    case FrameType.CONTROL -> {
                        stats.onReceived(0, FrameHeader.LENGTH + payload.byteSize(), urgent);
                        handler.onControl(lane, payload);
                    }
                    case FrameType.ERROR -> {
                        String text = new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                        fail(new TransportException(Kind.PEER_ERROR, "the " + otherSide() + " " + peer + " reported an error: " + text),
                                false, true);
                    }
                    case FrameType.HEARTBEAT -> {
                        // liveness only: the urgent thread noted the arrival
                    }
                    default -> throw new WireException("unexpected frame " + FrameType.name(h.type()));
                }
            } catch (TransportException e) {
                throw e;
            } catch (RuntimeException e) {
                throw new TransportException(Kind.HANDLER_FAILED, "the " + side() + "'s message handler failed: " + e, e);
            }
        }

        @Override
        public void onPages(int region, long first, int count, long wireBytes) {
            if (failure.get() != null) {
                return;
            }
            if (urgent) {
                ActivityIdleStrategy.URGENT.touch();
            }
            stats.onReceived(count, wireBytes, urgent);
            try {
                handler.onPages(lane, region, first, count);
            } catch (TransportException e) {
                throw e;
            } catch (RuntimeException e) {
                throw new TransportException(Kind.HANDLER_FAILED, "the " + side() + "'s message handler failed: " + e, e);
            }
        }
    }

    // ================================================================== lanes

    private RamRegion checkedRegion(int regionId, long firstPage, long pageCount) {
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

    private void requireRole(Role expected, String what) {
        if (role != expected) {
            throw new IllegalStateException(what + " is sent by the " + expected.name().toLowerCase() + ", and this is the " + side());
        }
    }

    private static byte[] controlCopy(MemorySegment payload) {
        if (payload.byteSize() > Lane.MAX_CONTROL_BYTES) {
            throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + Lane.MAX_CONTROL_BYTES);
        }
        return payload.toArray(ValueLayout.JAVA_BYTE);
    }

    /** The source's background lane: the single producer writes into the background publication itself. */
    private final class SourceBackgroundLane implements Lane {
        private final IdleStrategy idle = new BackoffIdleStrategy(50, 10, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(100));
        private final long window = options.pubWindow();
        /** The bulk driver's sender position of the background publication (UDP), or null (IPC: no sender). */
        private final org.agrona.concurrent.status.CountersReader counters = streams.bulkLease().aeron().countersReader();
        private final int senderPositionId = options.ipc() ? org.agrona.concurrent.status.CountersReader.NULL_COUNTER_ID
                : counters.findByTypeIdAndRegistrationId(io.aeron.driver.status.SenderPos.SENDER_POSITION_TYPE_ID,
                streams.backgroundPub().registrationId());
        private long pagesSent;
        private long lastPending;
        private volatile boolean completing;

        @Override
        public LaneKind kind() {
            return LaneKind.BACKGROUND;
        }

        private void checkNotCompleting() {
            if (completing) {
                throw new IllegalStateException("background lane: send after sendComplete()");
            }
        }

        @Override
        public long offerPages(int regionId, long firstPage, long pageCount) {
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            ensureOpen();
            checkNotCompleting();
            int perFrame = backgroundSender.pagesPerFrame(r.pageSize());
            long taken = 0;
            while (taken < pageCount) {
                int n = (int) Math.min(pageCount - taken, perFrame);
                long res = backgroundSender.tryPages(r, regionId, firstPage + taken, n);
                if (res > 0) {
                    taken += n;
                    pagesSent += n;
                    stats.onSent(n, backgroundSender.lastFrameBytes(), false);
                } else if (res == Publication.BACK_PRESSURED) {
                    break;
                } else if (res != Publication.ADMIN_ACTION) {
                    throw streamLost("background stream", res);
                }
            }
            updatePending();
            ActivityIdleStrategy.BULK.touch();
            if (taken == 0) {
                stats.onBackPressure();
                return BACK_PRESSURED;
            }
            return taken;
        }

        /**
         * Data in the publication not yet sent: up to the bulk driver's sender position (UDP), or not yet consumed
         * as the driver's conductor last saw it (IPC: the log is shared with the destination; an over-estimate by up
         * to an eighth of the window).
         */
        private void updatePending() {
            ExclusivePublication pub = streams.backgroundPub();
            long position = pub.position();
            long sent;
            if (senderPositionId != org.agrona.concurrent.status.CountersReader.NULL_COUNTER_ID) {
                sent = counters.getCounterValue(senderPositionId);
            } else {
                long limit = pub.positionLimit();
                sent = limit - window;
                if (limit < 0) {
                    return; // closed
                }
            }
            if (position < 0) {
                return; // closed
            }
            long pending = Math.max(0, position - sent);
            stats.addPending(pending - lastPending);
            lastPending = pending;
        }

        @Override
        public void sendPages(int regionId, long firstPage, long pageCount) {
            long done = 0;
            long since = System.nanoTime();
            while (done < pageCount) {
                long n = offerPages(regionId, firstPage + done, pageCount - done);
                if (n == BACK_PRESSURED) {
                    checkStall(since);
                    idle.idle();
                } else {
                    done += n;
                    since = System.nanoTime();
                    idle.reset();
                }
            }
        }

        /** Sends one frame, waiting out back pressure (bounded by the stall timeout and the connection's failure). */
        private void send(int type, int region, long first, long count, MemorySegment payload) {
            ensureOpen();
            checkNotCompleting();
            long since = System.nanoTime();
            idle.reset();
            while (true) {
                long r = payload == null ? backgroundSender.tryHeaderOnly(type, region, first, count)
                        : backgroundSender.tryPayload(type, payload);
                if (r > 0) {
                    stats.onSent(0, backgroundSender.lastFrameBytes(), false);
                    updatePending();
                    return;
                }
                if (r == Publication.BACK_PRESSURED) {
                    stats.onBackPressure();
                    checkStall(since);
                    idle.idle();
                    ensureOpen();
                } else if (r != Publication.ADMIN_ACTION) {
                    throw streamLost("background stream", r);
                }
            }
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            checkedRegion(regionId, firstPage, pageCount);
            send(FrameType.ZERO_RUN, regionId, firstPage, pageCount, null);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            checkedRegion(regionId, firstPage, pageCount);
            send(FrameType.SKIP_RUN, regionId, firstPage, pageCount, null);
        }

        @Override
        public void sendRoundEnd(long round) {
            if (round < 0) {
                throw new IllegalArgumentException("round " + round + " is negative");
            }
            send(FrameType.ROUND_END, 0, round, 0, null);
        }

        @Override
        public void sendPageRequest(int regionId, long firstPage, int pageCount) {
            throw new IllegalStateException("page requests go on the urgent lane, from the destination");
        }

        @Override
        public void sendControl(MemorySegment payload) {
            byte[] copy = controlCopy(payload);
            send(FrameType.CONTROL, 0, 0, 0, MemorySegment.ofArray(copy));
        }

        @Override
        public void sendComplete() {
            send(FrameType.COMPLETE, 0, 0, pagesSent, null);
            completing = true;
        }

        @Override
        public void flush() {
            // The pages were copied out of guest RAM when they were offered. Over IPC the log buffer is the medium:
            // nothing more to hand over. Over UDP, wait until the bulk driver has sent everything.
            ensureOpen();
            if (senderPositionId == org.agrona.concurrent.status.CountersReader.NULL_COUNTER_ID) {
                updatePending();
                return;
            }
            long since = System.nanoTime();
            idle.reset();
            while (true) {
                ensureOpen();
                updatePending();
                if (lastPending == 0) {
                    return;
                }
                checkStall(since);
                idle.idle();
            }
        }
    }

    /**
     * Written by the calling thread under {@link #urgentLock}: nothing is queued ahead of an urgent message, and the
     * urgent publication is its own log buffer, stream and (by default) media driver.
     */
    private final class UrgentLane implements Lane {
        @Override
        public LaneKind kind() {
            return LaneKind.URGENT;
        }

        /** Writes one frame; the caller holds the lock. */
        private void write(int type, RamRegion region, int regionId, long first, long count, MemorySegment payload) {
            long since = System.nanoTime();
            while (true) {
                long r;
                if (type == FrameType.PAGES) {
                    r = urgentSender.tryPages(region, regionId, first, (int) count);
                } else if (payload != null) {
                    r = urgentSender.tryPayload(type, payload);
                } else {
                    r = urgentSender.tryHeaderOnly(type, regionId, first, count);
                }
                if (r > 0) {
                    lastSentNs = System.nanoTime();
                    ActivityIdleStrategy.URGENT.touch();
                    stats.onSent(type == FrameType.PAGES ? count : 0, urgentSender.lastFrameBytes(), true);
                    return;
                }
                if (r == Publication.BACK_PRESSURED || r == Publication.ADMIN_ACTION) {
                    awaitUrgent(r, since);
                } else {
                    throw streamLost("urgent stream", r);
                }
            }
        }

        private void lockAndCheck() {
            urgentLock.lock();
            TransportException e = checkOpen();
            if (e == null && urgentClosed) {
                e = new TransportException(Kind.CLOSED, "urgent stream closed");
            }
            if (e != null) {
                urgentLock.unlock();
                throw e;
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
            lockAndCheck();
            try {
                int perFrame = urgentSender.pagesPerFrame(r.pageSize());
                for (long done = 0; done < pageCount; ) {
                    int n = (int) Math.min(pageCount - done, perFrame);
                    write(FrameType.PAGES, r, regionId, firstPage + done, n, null);
                    done += n;
                }
            } finally {
                urgentLock.unlock();
            }
        }

        private void locked(int type, int regionId, long first, long count, MemorySegment payload) {
            lockAndCheck();
            try {
                write(type, null, regionId, first, count, payload);
            } finally {
                urgentLock.unlock();
            }
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a zero run");
            checkedRegion(regionId, firstPage, pageCount);
            locked(FrameType.ZERO_RUN, regionId, firstPage, pageCount, null);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a skip run");
            checkedRegion(regionId, firstPage, pageCount);
            locked(FrameType.SKIP_RUN, regionId, firstPage, pageCount, null);
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
                        + " (one batch of batch-bytes=" + maxPayload + ")");
            }
            locked(FrameType.PAGE_REQUEST, regionId, firstPage, pageCount, null);
        }

        @Override
        public void sendControl(MemorySegment payload) {
            byte[] copy = controlCopy(payload);
            locked(FrameType.CONTROL, 0, 0, 0, MemorySegment.ofArray(copy));
        }

        @Override
        public void sendComplete() {
            requireRole(Role.DESTINATION, "the completion acknowledgement (the source completes on the background lane)");
            lockAndCheck();
            try {
                write(FrameType.COMPLETE, null, 0, 0, 0, null);
                completed = true;
            } finally {
                urgentLock.unlock();
            }
        }

        @Override
        public void flush() {
            ensureOpen(); // urgent sends are in the publication before they return
        }
    }

    @Override
    public String toString() {
        return "AeronConnection[" + side() + ", peer=" + peer + ", " + (options.ipc() ? "ipc" : "udp") + "]";
    }
}
