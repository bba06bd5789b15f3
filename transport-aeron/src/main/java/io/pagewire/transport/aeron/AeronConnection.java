package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.aeron.driver.status.SenderPos;
import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.FailureOrigin;
import io.pagewire.transport.spi.kit.FrameDispatcher;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.SourceLane;
import io.pagewire.linux.ThreadTuning;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.wire.FrameType;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.status.CountersReader;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * One pagewire connection over Aeron: an urgent stream each way and one background stream from source to
 * destination, each its own exclusive publication and image. The kit ({@link KitConnection}) owns lifecycle,
 * failure, the urgent lane and dispatch; this class adds how frames go into publications and come out of images.
 *
 * <h2>Threads</h2>
 * <ul>
 * <li>Both sides: an urgent thread polls the peer's urgent stream, sends heartbeats, and watches the peer timeout
 *     and the state of every stream.</li>
 * <li>Destination: a background thread (niced) polls the background stream and places pages.</li>
 * <li>Source: no background thread. The producer's {@code offerPages} claims space in the background publication
 *     and copies the pages straight from guest RAM into it; the bulk media driver sends them.</li>
 * </ul>
 *
 * <h2>Release</h2>
 * Threads end when the connection has ended (they poll {@link #running()}); then the kit releases the streams: a
 * failed connection revokes its background publication (the peer's image goes at once), otherwise streams close
 * normally, so an ERROR or the completion acknowledgement still reaches the peer.
 */
final class AeronConnection extends KitConnection {
    private static final System.Logger LOG = System.getLogger(AeronConnection.class.getName());
    /** After a stream ends or disconnects before completion, how long the urgent stream gets to deliver the peer's ERROR. */
    private static final long END_GRACE_NS = TimeUnit.MILLISECONDS.toNanos(500);
    /** How long a failing connection tries to get its ERROR into a back-pressured urgent stream. */
    private static final long ERROR_DELIVERY_NS = TimeUnit.MILLISECONDS.toNanos(100);

    /** The Aeron objects of one connection; all are released by {@link #release()}. */
    record Streams(Drivers.Lease urgentLease, Drivers.Lease bulkLease, ExclusivePublication urgentPub, Subscription urgentSub,
                   Image urgentImage, ExclusivePublication backgroundPub, Subscription backgroundSub, Image backgroundImage) {
    }

    private final AeronOptions options;
    private final long stallTimeoutNs;
    private final Streams streams;
    private final FrameSender urgentSender;     // guarded by the urgent lock
    private final FrameSender backgroundSender; // source: the producer thread's
    private final Consumer<Throwable> fatalListener = this::onDriverFatal;
    /** {@code frame-mac=on}: the authenticated session the MAC keys come from; null: off. */
    private final AuthExchange.Result frameMacKeys;
    private long disconnectedSinceNs; // urgent thread only

    AeronConnection(Role role, String peer, RamLayout layout, AeronOptions options, boolean dataDigest, int maxPayload,
                    MessageHandler handler, long heartbeatNs, long peerTimeoutNs, Streams streams, AuthExchange.Result frameMacKeys) {
        super(new Setup(role, peer, layout, handler, heartbeatNs, peerTimeoutNs, maxPayload, dataDigest, false, 1,
                capabilities(dataDigest), role == Role.SOURCE
                // Offered, unsent data: at most the publication window, plus one message that may overshoot its limit.
                ? (long) options.pubWindow() + streams.backgroundPub().maxMessageLength() : 0));
        this.options = options;
        this.stallTimeoutNs = TimeUnit.MILLISECONDS.toNanos(options.stallTimeoutMs());
        this.streams = streams;
        this.frameMacKeys = frameMacKeys;
        String self = role == Role.SOURCE ? "source" : "destination";
        this.urgentSender = new FrameSender(streams.urgentPub(), dataDigest, maxPayload, streams.urgentPub().termBufferLength() / 2,
                this::awaitUrgent, frameMac(self, "urgent"));
        this.backgroundSender = role == Role.SOURCE
                ? new FrameSender(streams.backgroundPub(), dataDigest, maxPayload, options.pubWindow(), this::awaitBackgroundSplit,
                frameMac(self, "background")) : null;
    }

    /** @return the MAC of frames {@code from} writes on {@code stream} ({@code frame-mac=on}), or null when off */
    private FrameMac frameMac(String from, String stream) {
        return frameMacKeys == null ? null : new FrameMac(frameMacKeys, from, stream);
    }

    /** @return who writes the stream this side reads */
    private String peerSide() {
        return role == Role.SOURCE ? "destination" : "source";
    }

    /** Test fault injection: the next frame with a payload this side sends on its urgent stream (or, source, background) is changed after its MAC. */
    void tamperWithNextFrame(boolean urgent) {
        (urgent ? urgentSender : backgroundSender).tamperWithNextFrame();
    }

    private static Set<Capability> capabilities(boolean dataDigest) {
        EnumSet<Capability> caps = EnumSet.of(Capability.SEPARATE_URGENT_PATH);
        if (dataDigest) {
            caps.add(Capability.DATA_DIGEST);
        }
        return caps;
    }

    /** Starts the threads; called once the handshake is done. */
    void start() {
        streams.urgentLease().onFatal(fatalListener);
        streams.bulkLease().onFatal(fatalListener);
        String side = role == Role.SOURCE ? "src" : "dst";
        thread("pagewire-aeron-" + side + "-urgent", "urgent stream", false, this::urgentLoop);
        if (role == Role.DESTINATION) {
            thread("pagewire-aeron-dst-bg", "background stream", true, this::backgroundLoop);
        }
        open();
    }

    private void onDriverFatal(Throwable e) {
        fail(new TransportException(Kind.CONNECTION_LOST, "aeron: the media driver of " + this + " stopped answering: " + e, e),
                FailureOrigin.PEER);
    }

    /** A publication reported a code that ends the stream: fails the connection and returns what to throw. */
    private TransportException streamLost(String stream, long code) {
        if (failure() == null) {
            Kind kind = code == Publication.CLOSED && isClosed() ? Kind.CLOSED : Kind.CONNECTION_LOST;
            fail(new TransportException(kind, "aeron: the " + stream + " to the " + otherSide() + " " + peer + " failed: " + code(code)
                    + (code == Publication.NOT_CONNECTED ? " (its subscriber stopped answering: the " + otherSide() + " is gone)" : "")),
                    code == Publication.NOT_CONNECTED ? FailureOrigin.PEER : FailureOrigin.LOCAL);
        }
        TransportException open = checkOpen();
        return open != null ? open : new TransportException(Kind.CONNECTION_LOST, "aeron: the " + stream + " failed: " + code(code));
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

    // ================================================================== urgent writes (the urgent lock is held)

    @Override
    protected void writeUrgent(int type, int regionId, long first, long count, MemorySegment payload) {
        long since = System.nanoTime();
        while (true) {
            long r = payload != null ? urgentSender.tryPayload(type, payload) : urgentSender.tryHeaderOnly(type, regionId, first, count);
            if (r > 0) {
                return;
            }
            if (r != Publication.BACK_PRESSURED && r != Publication.ADMIN_ACTION) {
                throw streamLost("urgent stream", r);
            }
            if (type == FrameType.ERROR) {
                // The connection is failing: try for a moment, then give up (the peer learns from the streams' end).
                if (System.nanoTime() - since > ERROR_DELIVERY_NS) {
                    throw new TransportException(Kind.CONNECTION_LOST, "could not tell the " + otherSide() + " why: urgent stream " + code(r));
                }
                Thread.onSpinWait();
            } else {
                awaitUrgent(r, since);
            }
        }
    }

    @Override
    protected int writeUrgentPages(RamRegion region, int regionId, long first, int count) {
        int n = Math.min(count, urgentSender.pagesPerFrame(region.pageSize()));
        long since = System.nanoTime();
        while (true) {
            long r = urgentSender.tryPages(region, regionId, first, n);
            if (r > 0) {
                return n;
            }
            if (r != Publication.BACK_PRESSURED && r != Publication.ADMIN_ACTION) {
                throw streamLost("urgent stream", r);
            }
            awaitUrgent(r, since);
        }
    }

    @Override
    protected boolean writeHeartbeat(long now) {
        long r = urgentSender.tryHeaderOnly(FrameType.HEARTBEAT, 0, now, 0);
        if (r > 0) {
            return true;
        }
        if (r != Publication.BACK_PRESSURED && r != Publication.ADMIN_ACTION) {
            throw streamLost("urgent stream", r);
        }
        return false;
    }

    @Override
    protected void urgentWritten() {
        ActivityIdleStrategy.URGENT.touch();
    }

    /** Waits for the urgent stream between retries: at most the peer timeout (a peer that reads nothing is gone). */
    private void awaitUrgent(long code, long sinceNs) {
        ensureOpen();
        if (System.nanoTime() - sinceNs > peerTimeoutNs) {
            TransportException t = new TransportException(Kind.TIMEOUT, "aeron: the urgent stream to the " + otherSide() + " " + peer
                    + " stayed back-pressured for " + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms (peer timeout)");
            fail(t, FailureOrigin.LOCAL);
            throw new TransportException(t.kind(), t.getMessage(), t);
        }
        Thread.onSpinWait();
        if (System.nanoTime() - sinceNs > TimeUnit.MICROSECONDS.toNanos(50)) {
            LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(5));
        }
    }

    /** Waits between the messages of a split background frame. */
    private void awaitBackgroundSplit(long code, long sinceNs) {
        ensureOpen();
        checkStall(sinceNs);
        LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(20));
    }

    private void checkStall(long sinceNs) {
        if (stallTimeoutNs > 0 && System.nanoTime() - sinceNs > stallTimeoutNs) {
            TransportException t = new TransportException(Kind.TIMEOUT, "aeron: the background stream to the " + otherSide() + " " + peer
                    + " made no progress for " + TimeUnit.NANOSECONDS.toMillis(stallTimeoutNs) + " ms although the "
                    + otherSide() + " answers (it stopped consuming; see stall-timeout-ms)");
            fail(t, FailureOrigin.LOCAL);
            throw new TransportException(t.kind(), t.getMessage(), t);
        }
    }

    // ================================================================== threads

    private void urgentLoop() {
        String why = ThreadTuning.urgentThread(Drivers.URGENT_SLICE_NS);
        if (why != null) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: urgent thread not tuned: " + why);
        }
        IdleStrategy idle = new ActivityIdleStrategy(ActivityIdleStrategy.URGENT);
        Image image = streams.urgentImage();
        try (FrameDispatcher dispatcher = new FrameDispatcher(this, 0)) {
            FrameReader reader = new FrameReader(layout, dispatcher, LaneKind.URGENT, frameMac(peerSide(), "urgent"));
            while (running()) {
                int work = reader.poll(image, 16);
                long now = System.nanoTime();
                if (work > 0) {
                    noteReceived(now);
                    ActivityIdleStrategy.URGENT.touch();
                }
                maybeHeartbeat(now);
                checkPeerTimeout(now);
                if (work == 0 && !checkStreams(image, reader)) {
                    return;
                }
                idle.idle(work);
            }
        }
    }

    /** @return false when the urgent stream ended (in order after completion, or the connection failed) */
    private boolean checkStreams(Image image, FrameReader reader) {
        if (image.isClosed() || image.isEndOfStream()) {
            streamEnded("urgent stream" + (reader.midFrame() ? " in the middle of a frame" : ""), false);
            return false;
        }
        String lost = null;
        if (!streams.urgentPub().isConnected()) {
            lost = "the urgent stream";
        } else if (role == Role.SOURCE && !streams.backgroundPub().isConnected()) {
            lost = "the background stream";
        }
        if (lost == null || endedInOrder()) {
            disconnectedSinceNs = 0;
            return true;
        }
        // A peer that fails sends ERROR on its urgent stream and then closes its subscriptions; our publication
        // may see that before this thread has read the ERROR. Keep reading for a moment so the reason wins.
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
        try (FrameDispatcher dispatcher = new FrameDispatcher(this, 0)) {
            FrameReader reader = new FrameReader(layout, dispatcher, LaneKind.BACKGROUND, frameMac(peerSide(), "background"));
            while (running()) {
                int work = reader.poll(image, 64);
                if (work > 0) {
                    ActivityIdleStrategy.BULK.touch();
                }
                if (work == 0 && (image.isClosed() || image.isEndOfStream())) {
                    if (!dispatcher.complete()) {
                        streamEnded("background stream" + (reader.midFrame() ? " in the middle of a frame (truncated stream)" : ""), true);
                    }
                    return;
                }
                idle.idle(work);
            }
        }
    }

    @Override
    protected void shutdown() {
        // Every thread polls running(); the producer's waits check the connection: nothing to wake.
    }

    @Override
    protected void release() {
        streams.urgentLease().removeFatalListener(fatalListener);
        streams.bulkLease().removeFatalListener(fatalListener);
        boolean failed = failure() != null && !endedInOrder();
        List<RuntimeException> errors = new ArrayList<>();
        closeQuietly(streams.urgentPub()::close, errors); // normal close: a last ERROR or COMPLETE still reaches the peer
        if (streams.backgroundPub() != null) {
            closeQuietly(failed ? streams.backgroundPub()::revoke : streams.backgroundPub()::close, errors);
        }
        closeQuietly(streams.urgentSub()::close, errors);
        if (streams.backgroundSub() != null) {
            closeQuietly(streams.backgroundSub()::close, errors);
        }
        closeQuietly(streams.urgentLease()::close, errors);
        closeQuietly(streams.bulkLease()::close, errors);
        TransportException f = failure();
        for (RuntimeException e : errors) {
            if (f != null) {
                f.addSuppressed(e);
            }
            LOG.log(System.Logger.Level.DEBUG, "aeron: releasing " + this + ": " + e, e);
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

    // ================================================================== the source's background lane

    @Override
    protected SourceLane sourceLane() {
        return new AeronSourceLane();
    }

    /** The single producer writes into the background publication itself. */
    private final class AeronSourceLane extends SourceLane {
        private final IdleStrategy idle = new BackoffIdleStrategy(50, 10, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(100));
        private final long window = options.pubWindow();
        /** The bulk driver's sender position of the background publication (UDP), or none (IPC: no sender). */
        private final CountersReader counters = streams.bulkLease().aeron().countersReader();
        private final int senderPositionId = options.ipc() ? CountersReader.NULL_COUNTER_ID
                : counters.findByTypeIdAndRegistrationId(SenderPos.SENDER_POSITION_TYPE_ID, streams.backgroundPub().registrationId());
        private long pagesSent;
        private long lastPending;
        private long backPressuredSinceNs;

        AeronSourceLane() {
            super(AeronConnection.this);
        }

        @Override
        protected long offer(RamRegion r, int regionId, long firstPage, long pageCount) {
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
                if (backPressuredSinceNs == 0) {
                    backPressuredSinceNs = System.nanoTime();
                }
                return BACK_PRESSURED;
            }
            backPressuredSinceNs = 0;
            idle.reset();
            return taken;
        }

        @Override
        protected void waitForRoom() {
            checkStall(backPressuredSinceNs == 0 ? System.nanoTime() : backPressuredSinceNs);
            idle.idle();
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
            if (senderPositionId != CountersReader.NULL_COUNTER_ID) {
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

        /** Sends one frame, waiting out back pressure (bounded by the stall timeout and the connection's failure). */
        @Override
        protected void put(int type, int regionId, long first, long count, byte[] payload) {
            long since = System.nanoTime();
            idle.reset();
            long frameCount = type == FrameType.COMPLETE ? pagesSent : count;
            MemorySegment data = payload == null ? null : MemorySegment.ofArray(payload);
            while (true) {
                long r = data == null ? backgroundSender.tryHeaderOnly(type, regionId, first, frameCount) : backgroundSender.tryPayload(type, data);
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
        protected void drain() {
            // The pages were copied out of guest RAM when they were offered. Over IPC the log buffer is the medium:
            // nothing more to hand over. Over UDP, wait until the bulk driver has sent everything.
            updatePending();
            if (senderPositionId == CountersReader.NULL_COUNTER_ID) {
                return;
            }
            long since = System.nanoTime();
            idle.reset();
            while (lastPending != 0) {
                ensureOpen();
                checkStall(since);
                idle.idle();
                updatePending();
            }
        }
    }

    @Override
    public String toString() {
        return "AeronConnection[" + side() + ", peer=" + peer + ", " + (options.ipc() ? "ipc" : "udp") + "]";
    }
}
