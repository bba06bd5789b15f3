package io.pagewire.agent.replica;

import io.pagewire.agent.GuestControl;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.dirty.UffdWriteTracker;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The primary side of checkpoint replication (COLO-style, seed 004): keeps a secondary's guest RAM at the primary's
 * last checkpoint while the primary's guest runs.
 *
 * <pre>
 *  initial sync (guest runs)      checkpoint 1 (paused)         between checkpoints (guest runs)   checkpoint 2 ...
 *  bulk pass, dirty passes  -->   pause, last dirty pages,  --> background passes: dirty pages --> pause, ...
 *  (background lane, ROUND_END      ROUND_END R, urgent          into the secondary's RAM cache,
 *   after each pass)                replica-checkpoint 1 R N,    ROUND_END after each pass,
 *                                   wait replica-applied 1,      rate-capped
 *                                   resume
 * </pre>
 *
 * Dirty pages come from the ram-tracker's userfaultfd write-protect log (async mode, {@code PAGEMAP_SCAN}). A page sent
 * while the guest runs may change after it was read: the write marks it dirty again, so it is sent again in a later
 * pass or at the pause, after a ROUND_END, which orders it after the earlier copy. The checkpoint is what the guest's
 * RAM holds at the pause; the primary resumes only once the secondary acknowledged that its guest RAM equals it.
 *
 * <p>Threading: {@link #run()} on one thread (the replication thread, the background lane's only producer);
 * {@link #requestCheckpoint()}, {@link #stop()} and {@link #stats()} from any thread.
 */
public final class ReplicationPrimary implements AutoCloseable {
    /** Hears about checkpoints (on the replication thread). */
    public interface Events {
        /**
         * Checkpoint {@code epoch} is complete at the secondary; the primary's guest resumes after this returns.
         *
         * @param epoch the checkpoint's number, from 1
         * @param pauseNs how long the guest was paused (up to now)
         * @param crc CRC32C of the primary's RAM at the checkpoint ({@link RamCrc}), or -1 without checksums
         */
        void onCheckpoint(long epoch, long pauseNs, long crc);

        /** Test hook: the replication thread holds inside checkpoint {@code epoch}, pages sent, marker not sent. */
        default void onHold(long epoch) {
        }
    }

    private static final int RUN_PAGES = 256;
    /** At most this many background passes right before a checkpoint's pause, fewer once one sends this few pages. */
    private static final int PRE_PAUSE_PASSES = 3;
    private static final long PRE_PAUSE_ENOUGH = 256;

    private final List<GuestRegion> regions;
    private final GuestControl guest;
    private final ReplicationConfig config;
    private final Events events;
    private final List<UffdWriteTracker> trackers = new ArrayList<>();
    private final List<DirtyBitmap> dirty = new ArrayList<>();
    private final Arena arena = Arena.ofShared();
    private final ReplicationStats stats;
    private final RateLimiter limiter;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition signal = lock.newCondition();
    private Connection connection;
    private boolean checkpointRequested; // guarded by lock
    private boolean stopRequested;       // guarded by lock
    private ReplicaMessages.Applied applied; // guarded by lock
    private long fillEpoch;              // guarded by lock: a lazy fill of this checkpoint is in progress at the secondary (0: none)
    private RuntimeException failure;    // guarded by lock
    private long holdEpoch = -1;
    private long round;
    private long epoch;
    private long pagesSinceCheckpoint;

    private ReplicationPrimary(List<GuestRegion> regions, GuestControl guest, ReplicationConfig config, Events events) {
        this.regions = List.copyOf(regions);
        this.guest = guest;
        this.config = config.conclude();
        this.events = events;
        this.stats = new ReplicationStats(regions.getFirst().pageSize());
        this.limiter = new RateLimiter(this.config.rateLimitBytesPerSec());
    }

    /**
     * Connects to a secondary ({@code pagewire receive --replica}, {@link ReplicaSecondary}); nothing is sent before
     * {@link #run()}.
     *
     * @param uri the secondary's URI (tcp://, unix:, ...)
     * @param regions the guest's RAM (names, sizes and page sizes must match the secondary's)
     * @param guest pauses and resumes the guest
     * @param config settings
     * @param events hears about checkpoints
     * @return the primary, connected
     */
    public static ReplicationPrimary connect(String uri, List<GuestRegion> regions, GuestControl guest, ReplicationConfig config, Events events) {
        if (regions.isEmpty()) {
            throw new IllegalArgumentException("no region to replicate");
        }
        for (GuestRegion r : regions) {
            String cause = UffdWriteTracker.unavailabilityCause(r.backing());
            if (cause != null) {
                throw new ReplicationException("cannot track the writes of region '" + r.name() + "' for replication: " + cause);
            }
        }
        ReplicationPrimary p = new ReplicationPrimary(regions, guest, config, events);
        List<RamRegion> layout = new ArrayList<>();
        for (GuestRegion r : regions) {
            layout.add(RamRegion.of(r.name(), r.memory().asSlice(0, r.sizeBytes()), r.pageSize()));
            p.dirty.add(DirtyBitmap.allocate(r.pageCount(), p.arena));
        }
        p.connection = Transports.connect(uri, new TransportContext().layout(RamLayout.of(layout)).handler(p.new Handler()));
        return p;
    }

    /** Asks for a checkpoint now (on demand, as from a monitor command); returns at once. */
    public void requestCheckpoint() {
        lock.lock();
        try {
            checkpointRequested = true;
            signal.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Ends replication after the current step: {@link #run()} then sends COMPLETE and returns. */
    public void stop() {
        lock.lock();
        try {
            stopRequested = true;
            signal.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Test hook: hold inside checkpoint {@code epoch} after its pages and ROUND_END, before its marker, until killed or stopped. */
    public void holdInCheckpoint(long epochToHold) {
        this.holdEpoch = epochToHold;
    }

    /** @return live statistics */
    public ReplicationStats stats() {
        return stats;
    }

    /**
     * Replicates until {@link #stop()} or a failure: initial sync, first checkpoint, then checkpoints every interval
     * and on demand with background passes between them.
     *
     * @throws ReplicationException when the connection fails or the secondary does not acknowledge (the guest is
     *         running when this returns or throws)
     */
    public void run() throws InterruptedException {
        try {
            for (int i = 0; i < regions.size(); i++) {
                UffdWriteTracker t = UffdWriteTracker.open(regions.get(i));
                trackers.add(t);
                t.start();
            }
            if (config.design() == ReplicationConfig.Design.BACKGROUND) {
                initialSync();
            } else {
                for (DirtyBitmap d : dirty) {
                    d.markAll(); // the first pause sends everything (populated)
                }
            }
            checkpoint();
            long nextCheckpoint = System.nanoTime() + config.intervalNs();
            long nextPass = System.nanoTime() + config.passIntervalNs();
            while (true) {
                boolean due;
                lock.lock();
                try {
                    while (true) {
                        throwIfFailed();
                        if (stopRequested) {
                            break;
                        }
                        long now = System.nanoTime();
                        if (checkpointRequested || (config.intervalNs() > 0 && now - nextCheckpoint >= 0)) {
                            break;
                        }
                        if (config.design() == ReplicationConfig.Design.BACKGROUND && now - nextPass >= 0) {
                            break;
                        }
                        long wait = config.design() == ReplicationConfig.Design.BACKGROUND ? nextPass - now : Long.MAX_VALUE;
                        if (config.intervalNs() > 0) {
                            wait = Math.min(wait, nextCheckpoint - now);
                        }
                        signal.awaitNanos(Math.min(wait, TimeUnit.SECONDS.toNanos(1)));
                    }
                    if (stopRequested) {
                        break;
                    }
                    due = checkpointRequested || (config.intervalNs() > 0 && System.nanoTime() - nextCheckpoint >= 0);
                    checkpointRequested = false;
                } finally {
                    lock.unlock();
                }
                if (due) {
                    if (config.design() == ReplicationConfig.Design.BACKGROUND) {
                        // Last passes while the guest still runs, until one is short: the pause then sends only what is
                        // dirtied during the last one.
                        for (int k = 0; k < PRE_PAUSE_PASSES; k++) {
                            long sent = pass(true);
                            stats.background(sent);
                            if (sent <= PRE_PAUSE_ENOUGH) {
                                break;
                            }
                        }
                    }
                    checkpoint();
                    nextCheckpoint = System.nanoTime() + config.intervalNs();
                } else {
                    long sent = pass(true);
                    stats.background(sent);
                }
                nextPass = System.nanoTime() + config.passIntervalNs();
            }
            awaitFilled();
            Lane bg = connection.background();
            bg.sendComplete();
        } catch (TransportException e) {
            throw new ReplicationException("replication to " + connection.peer() + " failed: " + e.getMessage(), e);
        }
    }

    private void initialSync() throws InterruptedException {
        long t0 = System.nanoTime();
        long sent = 0;
        // Bulk pass: every populated page (never-populated pages read as zeros on both sides).
        Lane bg = connection.background();
        limiter.start(System.nanoTime());
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            int region = i;
            long[] pages = {0};
            io.pagewire.agent.PopulatedRuns.forEach(r, (data, count) -> {
                for (long q = data; q < data + count; q += RUN_PAGES) {
                    long n = Math.min(RUN_PAGES, data + count - q);
                    bg.sendPages(region, q, n);
                    pages[0] += n;
                    pace(n * r.pageSize());
                }
            });
            sent += pages[0];
        }
        bg.sendRoundEnd(round++);
        // Dirty passes while the guest runs, until what is left is small or the pass budget is spent.
        for (int k = 0; k < config.maxInitialPasses(); k++) {
            throwIfFailedLocked();
            long before = sent;
            sent += pass(true);
            if (sent - before < 1024) {
                break;
            }
        }
        pagesSinceCheckpoint = sent;
        stats.initialSync(System.nanoTime() - t0, sent);
    }

    /** Collects the dirty log and sends what is dirty, then a ROUND_END. @return pages sent */
    private long pass(boolean capped) throws InterruptedException {
        awaitFilled();
        Lane bg = connection.background();
        long sent = 0;
        limiter.start(System.nanoTime());
        for (int i = 0; i < regions.size(); i++) {
            DirtyBitmap d = dirty.get(i);
            trackers.get(i).collect(d);
            sent += sendDirty(i, d, capped);
        }
        if (sent > 0) {
            bg.sendRoundEnd(round++);
        }
        pagesSinceCheckpoint += sent;
        return sent;
    }

    private long sendDirty(int region, DirtyBitmap d, boolean capped) throws InterruptedException {
        GuestRegion r = regions.get(region);
        Lane bg = connection.background();
        long pages = r.pageCount();
        long sent = 0;
        long p = d.nextDirty(0, pages);
        while (p < pages) {
            long end = Math.min(d.nextClean(p, pages), p + RUN_PAGES);
            // PAUSE_ALL marks every page dirty for the first pause: holes need no sending.
            long data = r.nextPopulatedPage(p, end);
            long n = 0;
            if (data < end) {
                long hole = r.nextUnpopulatedPage(data, end);
                n = hole - data;
                bg.sendPages(region, data, n);
                sent += n;
                end = hole;
            }
            d.clearRange(p, end - p);
            if (capped && n > 0) {
                pace(n * r.pageSize()); // pages sent, not the holes skipped
            }
            p = d.nextDirty(end, pages);
        }
        return sent;
    }

    /** Accounts {@code bytes} just sent in the background and sleeps as long as the rate cap says. */
    private void pace(long bytes) throws InterruptedException {
        long wait = limiter.sent(bytes, System.nanoTime());
        if (wait > 0) {
            LockSupport.parkNanos(wait);
            if (Thread.interrupted()) {
                throw new InterruptedException("replication interrupted while pacing");
            }
        }
    }

    private void checkpoint() throws InterruptedException {
        awaitFilled(); // before the pause: the guest runs while the secondary finishes filling the previous checkpoint
        long e = ++epoch;
        long t0 = System.nanoTime();
        guest.pause();
        boolean resumed = false;
        try {
            long before = pagesSinceCheckpoint;
            Lane bg = connection.background();
            long tPaused = System.nanoTime();
            long collectNs = 0;
            for (int i = 0; i < regions.size(); i++) {
                DirtyBitmap d = dirty.get(i);
                long c0 = System.nanoTime();
                trackers.get(i).collect(d);
                collectNs += System.nanoTime() - c0;
                pagesSinceCheckpoint += sendDirty(i, d, false);
            }
            long atPause = pagesSinceCheckpoint - before;
            long r = round++;
            bg.sendRoundEnd(r);
            long tSent = System.nanoTime();
            if (e == holdEpoch) {
                bg.flush();
                events.onHold(e);
                lock.lock();
                try {
                    while (!stopRequested) {
                        signal.await();
                    }
                } finally {
                    lock.unlock();
                }
                return;
            }
            connection.urgent().sendControl(ReplicaMessages.checkpoint(e, r, pagesSinceCheckpoint));
            long tMarker = System.nanoTime();
            long crc = config.checksums() ? RamCrc.of(regions, regions.stream().map(GuestRegion::memory).toList()) : -1;
            long tCrc = System.nanoTime();
            ReplicaMessages.Applied a = awaitApplied(e);
            long tAcked = System.nanoTime();
            pagesSinceCheckpoint = 0;
            events.onCheckpoint(e, tAcked - t0, crc);
            guest.resume();
            resumed = true;
            long pauseNs = System.nanoTime() - t0;
            stats.checkpoint(e, pauseNs, atPause, a, new long[] {tPaused - t0, collectNs, tSent - tPaused - collectNs, tMarker - tSent,
                    tCrc - tMarker, tAcked - tCrc, t0 + pauseNs - tAcked});
        } finally {
            if (!resumed) {
                guest.resume();
            }
        }
    }

    private ReplicaMessages.Applied awaitApplied(long e) throws InterruptedException {
        lock.lock();
        try {
            awaitLocked(() -> applied != null && applied.epoch() >= e, () -> "acknowledge checkpoint " + e);
            if (applied.epoch() != e) {
                throw new ReplicationException("the secondary acknowledged checkpoint " + applied.epoch() + ", expected " + e);
            }
            return applied;
        } finally {
            lock.unlock();
        }
    }

    /** Waits until the secondary has finished filling the last checkpoint lazily (no page may land in its cache before). */
    private void awaitFilled() throws InterruptedException {
        long t0 = System.nanoTime();
        lock.lock();
        try {
            if (fillEpoch == 0) {
                return;
            }
            long e = fillEpoch;
            awaitLocked(() -> fillEpoch == 0, () -> "finish filling checkpoint " + e);
        } finally {
            lock.unlock();
        }
        stats.fillWait(System.nanoTime() - t0);
    }

    /** Under the lock: waits for {@code done}, failing on a connection failure or after the acknowledgement timeout. */
    private void awaitLocked(java.util.function.BooleanSupplier done, java.util.function.Supplier<String> what) throws InterruptedException {
        long deadline = System.nanoTime() + config.ackTimeoutNs();
        while (!done.getAsBoolean()) {
            throwIfFailed();
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new ReplicationException("the secondary " + connection.peer() + " did not " + what.get() + " within "
                        + TimeUnit.NANOSECONDS.toMillis(config.ackTimeoutNs()) + " ms");
            }
            signal.awaitNanos(left);
        }
    }

    private void throwIfFailedLocked() {
        lock.lock();
        try {
            throwIfFailed();
        } finally {
            lock.unlock();
        }
    }

    private void throwIfFailed() {
        if (failure != null) {
            throw failure instanceof ReplicationException re ? re
                    : new ReplicationException("replication to " + connection.peer() + " failed: " + failure.getMessage(), failure);
        }
    }

    private void fail(RuntimeException e) {
        lock.lock();
        try {
            if (failure == null) {
                failure = e;
            }
            signal.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** The secondary's acknowledgements and failures. */
    private final class Handler implements MessageHandler {
        @Override
        public void onControl(LaneKind lane, MemorySegment payload) {
            try {
                String text = ReplicaMessages.decode(payload);
                String type = ReplicaMessages.type(text);
                if (type.equals(ReplicaMessages.FILLED)) {
                    ReplicaMessages.Filled f = ReplicaMessages.parseFilled(text);
                    lock.lock();
                    try {
                        if (f.epoch() != fillEpoch) {
                            throw new IllegalArgumentException("replica-filled " + f.epoch() + " while "
                                    + (fillEpoch == 0 ? "no fill is in progress" : "checkpoint " + fillEpoch + " is being filled"));
                        }
                        stats.filled(f); // before the replication thread can go on (and a reader see the stats)
                        fillEpoch = 0;
                        signal.signalAll();
                    } finally {
                        lock.unlock();
                    }
                    return;
                }
                if (!type.equals(ReplicaMessages.APPLIED)) {
                    throw new IllegalArgumentException("unknown replication message '" + PeerText.escape(text) + "' (expected "
                            + ReplicaMessages.APPLIED + " or " + ReplicaMessages.FILLED + ")");
                }
                ReplicaMessages.Applied a = ReplicaMessages.parseApplied(text);
                lock.lock();
                try {
                    applied = a;
                    if (a.lazyPages() > 0) {
                        fillEpoch = a.epoch();
                    }
                    signal.signalAll();
                } finally {
                    lock.unlock();
                }
            } catch (IllegalArgumentException e) {
                connection.abort(e.getMessage());
                fail(new ReplicationException("bad message from the secondary: " + e.getMessage(), e));
            }
        }

        @Override
        public void onError(TransportException error) {
            fail(error);
        }

        @Override
        public void onClosed(TransportException f) {
            if (f != null) {
                fail(f);
            }
        }
    }

    /** Stops tracking and closes the connection (abruptly unless {@link #run()} completed). Idempotent. */
    @Override
    public void close() {
        try {
            for (UffdWriteTracker t : trackers) {
                t.close();
            }
            trackers.clear();
        } finally {
            if (connection != null) {
                connection.close();
            }
            arena.close();
        }
    }
}
