package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.dirty.DirtyLogSource;
import io.pagewire.ramtracker.dirty.UffdWriteTracker;
import io.pagewire.ramtracker.scan.BalloonMap;
import io.pagewire.ramtracker.scan.PageClassifier;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.RegionFile;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;
import tools.jackson.databind.node.ObjectNode;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The source side of a precopy migration.
 * <pre>
 *   setup ---> bulk round ---> dirty rounds ---> switchover ---> completed
 *   (connect,   (every page:    (collect the       (pause, final
 *    start       normal, zero    dirty log, send    round, COMPLETE,
 *    tracking)   or ballooned)   what is dirty)     wait for the ack)
 * </pre>
 * Switchover comes when the bytes still dirty, at the measured bandwidth, fit the downtime
 * limit; or, when the round or time budget runs out, by policy: force, cancel, or throttle
 * (auto-converge). The guest is paused only for the switchover. The source RAM is only ever
 * read: a failed or cancelled migration leaves the guest running with its RAM untouched.
 *
 * <h2>Threading</h2>
 * {@link #run} blocks its caller. Pages are classified by {@code scanThreads} threads, each
 * taking a slice of every region; they hand runs to the connection's background lane one at a
 * time (the lane has a single producer). {@link #cancel} may be called from any thread.
 */
public final class SourceMigration {
    private final List<GuestRegion> regions;
    private final GuestControl guest;
    private final Map<String, BalloonMap> balloons;
    private final MigrationConfig config;
    private final RoundSender roundSender;
    private final MigrationStats stats = new MigrationStats("source");
    private final AtomicReference<TransportException> failure = new AtomicReference<>();
    /** Regions the connection handed over instead of copying (unix:// share-memory); their pages are never sent. */
    private volatile Set<Integer> shared = Set.of();
    private volatile CountDownLatch acknowledged = new CountDownLatch(1);
    private final AtomicReference<CompletableFuture<String>> reply = new AtomicReference<>(new CompletableFuture<>());
    private volatile String cancelReason;
    private volatile Boolean verified;
    private volatile String verification;
    /** While waiting for the verdict: the destination's checksum progress (null otherwise). */
    private volatile ProgressDeadline destinationVerify;
    private long nextRound = 1;
    private volatile long trackingStartNs;
    private volatile boolean postcopyRequested;
    private volatile boolean postcopyCommitted;
    private volatile tools.jackson.databind.node.ObjectNode postcopyStats;
    private volatile Connection connection;
    /** Postcopy: pages still to send (taken by the push or by a page request, whichever is first). */
    private volatile List<DirtyBitmap> postcopyPending;
    /**
     * Postcopy: per push worker, where the latest fault handed to it asks the push to go on from
     * ((region << 48) | page), or -1. Replaced (with the worker count) when a push starts.
     */
    private volatile java.util.concurrent.atomic.AtomicLongArray pushHints = new java.util.concurrent.atomic.AtomicLongArray(new long[]{-1});
    private final java.util.concurrent.atomic.AtomicLong postcopyRequests = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong postcopyPagesAnswered = new java.util.concurrent.atomic.AtomicLong();
    /** Requested pages the push had taken already (answered on the urgent lane all the same). */
    private final java.util.concurrent.atomic.AtomicLong postcopyPagesInFlight = new java.util.concurrent.atomic.AtomicLong();
    private final CompletableFuture<Void> postcopyRunning = new CompletableFuture<>();
    /** This migration's id: a new connection resumes it only when the destination knows it. */
    private final String session = Long.toHexString(new java.security.SecureRandom().nextLong());
    /** Connection generation: events of a connection that was replaced are ignored. */
    private volatile int generation;
    /** Manual resume requests (a URI, or "" for the same one) while postcopy is paused. */
    private final java.util.concurrent.BlockingQueue<String> resumeRequests = new java.util.concurrent.ArrayBlockingQueue<>(4);
    /** Recovery: the destination's received bitmap, filled by its postcopy-resume messages. */
    private volatile List<DirtyBitmap> received;
    /** Recovery: completed when the destination's received bitmap is complete and the pending pages rebuilt. */
    private volatile CompletableFuture<Void> resumed = new CompletableFuture<>();
    /** Bytes sent on connections that were replaced. */
    private long transferredBefore;
    private volatile String uri;

    /**
     * @param ram the guest RAM (every region is migrated, in order)
     * @param guest pause, resume and throttle the guest
     * @param balloons ballooned pages per region name (absent: nothing ballooned)
     * @param config settings
     */
    public SourceMigration(GuestRam ram, GuestControl guest, Map<String, BalloonMap> balloons, MigrationConfig config) {
        this.regions = ram.regions();
        this.guest = guest;
        this.balloons = Map.copyOf(balloons);
        this.config = config.conclude();
        if (regions.isEmpty()) {
            throw new IllegalArgumentException("guest RAM has no regions");
        }
        this.roundSender = new RoundSender(regions, this.balloons, stats, this.config.maxBandwidthBytesPerSec(), this.config.scanThreads(),
                this::checkAlive);
    }

    /** @return live statistics */
    public MigrationStats stats() {
        return stats;
    }

    /** @return whether the destination's copy matched (null when not verified) */
    public Boolean verified() {
        return verified;
    }

    /** @return the destination's verification answer ("verified", or what differs), null when not verified */
    public String verification() {
        return verification;
    }

    /** Switches to postcopy at the next round boundary (QEMU's migrate-start-postcopy); needs {@link MigrationConfig#postcopy()}. */
    public void startPostcopy() {
        if (!config.postcopy()) {
            throw new IllegalStateException("postcopy was not enabled for this migration (MigrationConfig.postcopy(true))");
        }
        postcopyRequested = true;
    }

    /** @return the destination's postcopy measurements as compact JSON text (one object), or null */
    public String postcopyStats() {
        var p = postcopyStats;
        return p == null ? null : Json.write(p);
    }

    /**
     * @return the destination's postcopy measurements (parsed from its message; an object with an
     *     {@code error} field when what it sent was not a JSON object), or null when none came
     */
    public tools.jackson.databind.node.ObjectNode postcopyStatsNode() {
        var p = postcopyStats;
        return p == null ? null : p.deepCopy();
    }

    /**
     * Resumes a postcopy whose connection broke (QEMU's {@code migrate -r}): connects now instead
     * of at the next automatic retry, to {@code uri} (null: the same destination as before).
     *
     * @throws IllegalStateException when the migration is not postcopy-paused
     */
    public void resume(String uri) {
        MigrationStats.Status st = stats.status();
        if (st != MigrationStats.Status.POSTCOPY_PAUSED && st != MigrationStats.Status.POSTCOPY_RECOVER) {
            throw new IllegalStateException("the migration is " + st.qemuName() + ", not postcopy-paused: nothing to resume");
        }
        if (!resumeRequests.offer(uri == null ? "" : uri)) {
            throw new IllegalStateException("resume requests are already waiting");
        }
    }

    /** Cancels the migration; the guest keeps running on the source. */
    public void cancel(String reason) {
        cancelReason = reason;
    }

    /**
     * Migrates to the destination at {@code uri}.
     *
     * @return the statistics; {@link MigrationStats#status()} is completed, failed or cancelled
     */
    public MigrationStats run(String uri) {
        this.uri = uri;
        long total = 0;
        for (GuestRegion r : regions) {
            total += r.sizeBytes();
        }
        stats.totalBytes(total);
        stats.pageSize(regions.getFirst().pageSize());
        List<DirtyLogSource> trackers = new ArrayList<>();
        Connection conn = null;
        boolean paused = false;
        // As many threads as the round's workers ask for (one per background channel at least): tasks
        // are handed over, never queued; at most RoundSender.workers() run at once.
        ExecutorService scan = Executors.newCachedThreadPool(Thread.ofPlatform().daemon().name("pagewire-scan-", 0).factory());
        try (Arena arena = Arena.ofShared()) {
            List<RamRegion> layoutRegions = new ArrayList<>();
            List<DirtyBitmap> bitmaps = new ArrayList<>();
            for (GuestRegion r : regions) {
                RamRegion rr = RamRegion.of(r.name(), r.memory().asSlice(0, r.sizeBytes()), r.pageSize());
                // A memfd or file backing can be handed over whole by a local transport (unix:// share-memory).
                layoutRegions.add(r.file().isPresent() ? rr.withFile(new RegionFile(r.file().get().fd(), 0)) : rr);
                bitmaps.add(DirtyBitmap.allocate(r.pageCount(), arena));
            }
            // Dirty tracking starts while the connection is set up: both take time, neither needs the other.
            // Postcopy at once needs no dirty log: the guest pauses before anything is sent.
            boolean atOnce = config.postcopy() && config.postcopyAfterRounds() == 0;
            CompletableFuture<List<DirtyLogSource>> tracking = atOnce ? CompletableFuture.completedFuture(trackers)
                    : CompletableFuture.supplyAsync(() -> startTracking(trackers), scan);
            conn = Transports.connect(uri, new TransportContext().layout(RamLayout.of(layoutRegions)).handler(handler(0)));
            shared = conn.sharedRegions(); // handed over: the destination maps this memory, no page of it is sent
            join(tracking);
            conn.urgent().sendControl(MemorySegment.ofArray((Protocol.SESSION + " " + session).getBytes(StandardCharsets.UTF_8)));
            if (!atOnce) {
                // Postcopy at once places every page with UFFDIO_COPY, which allocates it: populating ahead
                // would only cost memory and, at the discard, the time to free it again.
                sendPopulationHints(conn);
            }
            stats.status(MigrationStats.Status.ACTIVE);
            stats.setupDone();
            this.connection = conn;

            if (config.postcopy() && config.postcopyAfterRounds() == 0) {
                // Postcopy at once: nothing was sent, every page is still to go.
                for (DirtyBitmap b : bitmaps) {
                    b.markAll();
                }
                paused = true; // runPostcopy pauses first thing
                return runPostcopy(conn, trackers, bitmaps, false, scan);
            }

            // Bulk round: every page.
            long bandwidth = -1;
            long roundStart = System.nanoTime();
            long sent0 = conn.stats().bytesSent();
            sendRound(conn, scan, bitmaps, true);
            long roundNs = System.nanoTime() - roundStart;
            bandwidth = measure(conn.stats().bytesSent() - sent0, roundNs, bandwidth);
            stats.round(totalPages(), roundNs, conn.stats().bytesSent() - sent0, -1, bandwidth, -1);
            // Tracking started before the bulk round: the first collect covers everything since then.
            long lastCollect = trackingStartNs;
            long previousRemaining = Long.MAX_VALUE;
            int throttle = 0;
            long migrationStart = roundStart;

            while (true) {
                checkAlive();
                long t0 = System.nanoTime();
                long dirtyPages = collect(trackers, bitmaps);
                long collectNs = System.nanoTime() - t0;
                stats.dirtyPagesRate(dirtyPages * 1_000_000_000L / Math.max(1, t0 - lastCollect));
                lastCollect = t0;
                long remaining = dirtyBytes(bitmaps);
                stats.remainingBytes(remaining);
                long expectedNs = collectNs + (long) (remaining * 1e9 / Math.max(1, bandwidth));
                stats.transferred(conn.stats().bytesSent());
                // QEMU switches over as soon as the rest fits the limit. We also go one more round while
                // that still halves what is left, unless the downtime is already small: a shorter pause
                // for the price of one cheap round.
                boolean shrinking = remaining * 2 <= previousRemaining;
                previousRemaining = remaining;
                if (expectedNs <= config.downtimeLimitNs()
                        && (expectedNs <= config.downtimeLimitNs() / 4 || !shrinking || stats.rounds() >= config.maxRounds())) {
                    stats.expectedDowntime(expectedNs);
                    break;
                }
                boolean budgetSpent = stats.rounds() >= config.maxRounds()
                        || (config.maxTimeNs() > 0 && System.nanoTime() - migrationStart >= config.maxTimeNs());
                if (config.postcopy() && (postcopyRequested || budgetSpent
                        || (config.postcopyAfterRounds() > 0 && stats.rounds() >= config.postcopyAfterRounds()))) {
                    paused = true;
                    return runPostcopy(conn, trackers, bitmaps, true, scan);
                }
                if (budgetSpent) {
                    MigrationConfig.Policy policy = config.policy();
                    if (policy == MigrationConfig.Policy.THROTTLE && throttle >= config.throttleMaxPercent()) {
                        policy = MigrationConfig.Policy.FORCE; // throttled as far as allowed and still not converging
                    }
                    if (policy == MigrationConfig.Policy.CANCEL) {
                        cancelReason = "precopy did not converge within " + stats.rounds() + " rounds (expected downtime "
                                + expectedNs / 1_000_000 + " ms > limit " + config.downtimeLimitNs() / 1_000_000 + " ms)";
                        throw new CancelledException(cancelReason);
                    }
                    if (policy == MigrationConfig.Policy.FORCE) {
                        stats.expectedDowntime(expectedNs);
                        break;
                    }
                    throttle = throttle == 0 ? config.throttleInitialPercent()
                            : Math.min(config.throttleMaxPercent(), throttle + config.throttleIncrementPercent());
                    guest.throttle(throttle);
                    stats.throttle(throttle);
                }
                roundStart = System.nanoTime();
                sent0 = conn.stats().bytesSent();
                long pages = dirtyPages;
                sendRound(conn, scan, bitmaps, false);
                roundNs = System.nanoTime() - roundStart;
                bandwidth = measure(conn.stats().bytesSent() - sent0, roundNs, bandwidth);
                stats.round(pages, roundNs, conn.stats().bytesSent() - sent0, collectNs, bandwidth, expectedNs);
            }

            // Switchover: the guest stops only now.
            long pauseStart = System.nanoTime();
            stats.status(MigrationStats.Status.DEVICE);
            guest.pause();
            paused = true;
            collect(trackers, bitmaps);
            stats.remainingBytes(dirtyBytes(bitmaps));
            if (config.verify()) {
                sendFinalRoundChunks(conn, bitmaps);
            }
            sendRound(conn, scan, bitmaps, false);
            conn.background().sendComplete();
            long finalRoundNs = System.nanoTime() - pauseStart;
            if (!acknowledged.await(config.completionTimeoutNs(), TimeUnit.NANOSECONDS)) {
                throw new TransportException(TransportException.Kind.TIMEOUT, "the destination did not acknowledge completion within "
                        + TimeUnit.NANOSECONDS.toSeconds(config.completionTimeoutNs()) + " s");
            }
            checkAlive();
            long downtimeNs = System.nanoTime() - pauseStart;
            stats.downtime(downtimeNs, finalRoundNs, downtimeNs - finalRoundNs);
            stats.remainingBytes(0);
            stats.transferred(conn.stats().bytesSent());
            stats.status(MigrationStats.Status.COMPLETED);
            stats.end();
            // The guest now belongs to the destination; the source stays paused, so nothing writes its RAM and the
            // protection can come off while the verification reads it: lifting write-protection from every populated
            // page walks the page tables (~40 ms of CPU per GiB here, several times that in wall time on a busy machine),
            // which would otherwise delay the verdict.
            CompletableFuture<Void> untracked = CompletableFuture.runAsync(() -> stopTracking(trackers), scan);
            exchangeVerification(conn);
            join(untracked);
            return stats;
        } catch (CancelledException e) {
            stats.cancelled(e.getMessage());
            resumeAfterFailure(paused);
            if (conn != null) {
                conn.abort("migration cancelled by the source: " + e.getMessage());
            }
            return stats;
        } catch (TransportException | IllegalStateException | IllegalArgumentException | IndexOutOfBoundsException e) {
            TransportException f = failure.get() != null ? failure.get() : e instanceof TransportException t ? t : null;
            stats.failed(f != null ? f.getMessage() : e.getMessage(), f != null ? f.kind() : null);
            resumeAfterFailure(paused);
            return stats;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            stats.failed("interrupted");
            resumeAfterFailure(paused);
            return stats;
        } finally {
            Connection last = connection;
            if (last != null && last != conn) {
                // Postcopy resumed over a new connection; the first one was closed then.
                stats.transferred(transferredBefore + last.stats().bytesSent());
                last.close();
            } else if (conn != null) {
                stats.transferred(conn.stats().bytesSent());
                conn.close();
            }
            for (DirtyLogSource t : trackers) {
                t.close();
            }
            scan.shutdownNow();
        }
    }

    /**
     * Postcopy: pause, take the final dirty log, tell the destination which of its pages are stale
     * (discard) and to start the guest, then push every page still pending in the background while
     * page requests are answered on the urgent lane.
     * <pre>
     *  background lane: ROUND_END | postcopy-discard ... | ROUND_END | postcopy-start | ROUND_END | pages ... | COMPLETE
     *  urgent lane:                                   <- postcopy-running   <- PAGE_REQUEST -> PAGES   <- postcopy-stats, COMPLETE
     * </pre>
     * The round ends order everything: no precopy page can land after its discard, and no pushed
     * page before the destination switched to postcopy placement.
     */
    private MigrationStats runPostcopy(Connection conn, List<DirtyLogSource> trackers, List<DirtyBitmap> bitmaps, boolean collectFinal,
                                       ExecutorService pool) throws InterruptedException {
        long pauseStart = System.nanoTime();
        stats.status(MigrationStats.Status.DEVICE);
        guest.pause();
        if (collectFinal) {
            collect(trackers, bitmaps);
        }
        // The source guest stays paused from now on: tracking is left to close after completion
        // (un-protecting gigabytes takes tens of milliseconds, which would count as downtime).
        conn.background().sendRoundEnd(nextRound++);
        if (collectFinal) {
            // Pages sent in precopy and dirty since: the destination drops its stale copies. (It also
            // drops, by itself, whatever it holds that was never sent: at once, that is everything.)
            for (int r = 0; r < bitmaps.size(); r++) {
                sendDiscard(conn, r, bitmaps.get(r));
            }
        }
        conn.background().sendRoundEnd(nextRound++);
        postcopyPending = bitmaps;
        // From here the destination may run the guest: the source must never resume it (split brain).
        postcopyCommitted = true;
        conn.background().sendControl(MemorySegment.ofArray(Protocol.POSTCOPY_START.getBytes(StandardCharsets.UTF_8)));
        conn.background().sendRoundEnd(nextRound++);
        long t0 = System.nanoTime();
        long pages = 0;
        while (true) {
            try {
                if (!postcopyRunning.isDone()) {
                    awaitPostcopyRunning(pauseStart);
                    stats.remainingBytes(dirtyBytes(bitmaps));
                }
                pages += push(conn, postcopyPending, pool);
                conn.background().sendComplete();
                if (!acknowledged.await(config.completionTimeoutNs(), TimeUnit.NANOSECONDS)) {
                    throw new TransportException(TransportException.Kind.TIMEOUT, "the destination did not acknowledge completion within "
                            + TimeUnit.NANOSECONDS.toSeconds(config.completionTimeoutNs()) + " s");
                }
                checkAlive();
                break;
            } catch (TransportException e) {
                // A connection that failed by itself (not our own timeout, not the peer's error report):
                // QEMU's postcopy-paused. Both sides keep their state and resume over a new connection.
                TransportException cause = failure.get() != null ? failure.get() : conn.failure();
                if (cause == null || !recoverable(cause) || config.postcopyRecoveryTimeoutNs() == 0) {
                    throw e;
                }
                conn = recover(conn, bitmaps, cause);
            }
        }
        stats.round(pages, System.nanoTime() - t0, -1, -1, -1, -1);
        stats.postcopy(postcopyRequests.get(), postcopyPagesAnswered.get() * regions.getFirst().pageSize(), postcopyPagesInFlight.get());
        stats.remainingBytes(0);
        stats.transferred(transferredBefore + conn.stats().bytesSent());
        stats.status(MigrationStats.Status.COMPLETED);
        stats.end();
        exchangeVerification(conn);
        return stats;
    }

    /** Waits for the destination's postcopy-running: the guest runs there, postcopy's downtime ends. */
    private void awaitPostcopyRunning(long pauseStart) throws InterruptedException {
        try {
            postcopyRunning.get(config.completionTimeoutNs(), TimeUnit.NANOSECONDS);
        } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
            checkAlive();
            throw new TransportException(TransportException.Kind.TIMEOUT, "the destination did not start the guest in postcopy: " + e);
        }
        long downtimeNs = System.nanoTime() - pauseStart;
        stats.downtime(downtimeNs, downtimeNs, 0);
        stats.status(MigrationStats.Status.POSTCOPY_ACTIVE);
    }

    /**
     * Background push, 256 pages at a time, from where the latest fault was (the fault's
     * neighbourhood goes first): one worker on the lane that spreads over every channel, or with
     * {@link #PUSH_WORKERS} more than one, one worker per channel on that channel's own lane (QEMU
     * multifd's shape; a lane has one producer). Returns the pages taken.
     */
    private long push(Connection conn, List<DirtyBitmap> bitmaps, ExecutorService pool) throws InterruptedException {
        int workers = Math.max(1, Math.min(conn.backgroundChannels(), PUSH_WORKERS));
        long[] none = new long[workers];
        java.util.Arrays.fill(none, -1);
        pushHints = new java.util.concurrent.atomic.AtomicLongArray(none);
        if (workers == 1) {
            return pushPart(conn.background(), bitmaps, 0, 1);
        }
        List<java.util.concurrent.Future<Long>> parts = new ArrayList<>(workers);
        for (int w = 0; w < workers; w++) {
            int part = w;
            Lane lane = conn.backgroundChannel(w);
            parts.add(pool.submit(() -> pushPart(lane, bitmaps, part, workers)));
        }
        long pages = 0;
        RuntimeException first = null;
        for (java.util.concurrent.Future<Long> f : parts) {
            // Every worker is waited for, also after one failed: none may still offer on this connection
            // when a recovery replaces it (they fail by themselves once the connection did).
            try {
                pages += f.get();
            } catch (ExecutionException e) {
                RuntimeException cause = e.getCause() instanceof RuntimeException re ? re
                        : new IllegalStateException("postcopy push failed: " + e.getCause(), e.getCause());
                if (first == null) {
                    first = cause;
                } else {
                    first.addSuppressed(cause);
                }
            }
        }
        if (first != null) {
            throw first;
        }
        return pages;
    }

    /**
     * Postcopy push workers, at most one per background channel (system property
     * {@code pagewire.postcopy.push-workers}, default 1: one worker feeding the lane that spreads over
     * every channel measured faster than one per channel on 2 cores, docs/benchmarks.md, issue 16).
     */
    private static final int PUSH_WORKERS = Math.max(1, Integer.getInteger("pagewire.postcopy.push-workers", 1));

    /** @return where push worker {@code part} of {@code parts} starts in a region of {@code n} pages (a bitmap word's first page) */
    private static long partStart(long n, int part, int parts) {
        return part == parts ? n : Math.min(n, (long) (n * (double) part / parts) & ~63L);
    }

    /**
     * One push worker, on its own lane: every region from its own starting point, going on from the
     * latest fault it was told of. The workers take pages from one bitmap atomically, so each page
     * goes once whichever worker reaches it; all of them follow the faults (in turn), so the
     * guest's working set is pushed at the rate of every channel, not of the one owning its addresses.
     */
    private long pushPart(Lane lane, List<DirtyBitmap> bitmaps, int part, int parts) {
        long pages = 0;
        java.util.concurrent.atomic.AtomicLongArray hints = pushHints;
        for (int r = 0; r < regions.size(); r++) {
            GuestRegion region = regions.get(r);
            DirtyBitmap d = bitmaps.get(r);
            BalloonMap balloon = balloons.get(region.name());
            PageClassifier classifier = new PageClassifier(region, balloon);
            RoundSender.ChannelSink sink = roundSender.sink(lane, null, r, region.pageSize());
            long n = region.pageCount();
            long pos = partStart(n, part, parts);
            while (true) {
                checkAlive();
                long hint = hints.getAndSet(part, -1);
                if (hint >= 0 && (int) (hint >>> 48) == r) {
                    pos = Math.min(n - 1, hint & ((1L << 48) - 1));
                }
                long p = d.nextDirty(pos, n);
                if (p >= n) {
                    p = d.nextDirty(0, n);
                    if (p >= n) {
                        sink.flush();
                        break; // nothing left in this region
                    }
                }
                if (p != pos) {
                    sink.flush(); // a zero run held back is contiguous only with what follows it directly
                }
                long count = Math.min(256, n - p);
                long taken = d.count(p, count);
                long stop = classifier.classifyDirty(d, p, count, sink);
                if (stop < p + count) {
                    // Back-pressured: what was not handed on is dirty again; wait for room, then go on.
                    taken -= d.count(p, count);
                    lane.awaitRoom();
                }
                pages += taken;
                pos = stop;
            }
        }
        return pages;
    }

    /** Failures a new connection can cure: the connection broke or went silent. */
    private static boolean recoverable(TransportException e) {
        return e.kind() == TransportException.Kind.CONNECTION_LOST || e.kind() == TransportException.Kind.TIMEOUT;
    }

    /**
     * Postcopy recovery (QEMU: postcopy-paused, then postcopy-recover): closes the broken
     * connection and connects again, automatically with a growing interval or at once on
     * {@link #resume}, until the recovery timeout. A new connection first says
     * "postcopy-recover SESSION"; the destination answers with the bitmap of pages it holds, and
     * every other page becomes pending again (those in flight when the connection broke), so no
     * page the destination holds is sent twice. Page requests of faults still waiting follow.
     *
     * @return the new connection, postcopy active again
     * @throws TransportException when no new connection resumed the migration within the timeout
     */
    private Connection recover(Connection old, List<DirtyBitmap> pending, TransportException cause) throws InterruptedException {
        long pausedAt = System.nanoTime();
        long deadline = pausedAt + config.postcopyRecoveryTimeoutNs();
        postcopyPending = null; // requests cannot be answered now; the destination asks again after resuming
        generation++; // events of the old connection are ignored from here
        stats.postcopyPaused(cause.getMessage());
        transferredBefore += old.stats().bytesSent();
        old.close();
        String target = uri;
        long backoffMs = 50;
        String lastError = cause.getMessage();
        while (true) {
            String manual = resumeRequests.poll();
            if (manual != null && !manual.isEmpty()) {
                target = manual;
            }
            if (manual == null && System.nanoTime() - deadline >= 0) {
                throw new TransportException(TransportException.Kind.TIMEOUT, "postcopy-paused: no new connection resumed the migration within "
                        + TimeUnit.NANOSECONDS.toSeconds(config.postcopyRecoveryTimeoutNs()) + " s (last attempt: " + lastError
                        + "); the connection was lost with: " + cause.getMessage());
            }
            int gen = generation + 1;
            List<DirtyBitmap> got = new ArrayList<>();
            for (DirtyBitmap d : pending) {
                got.add(DirtyBitmap.allocate(d.pageCount(), Arena.ofAuto()));
            }
            received = got;
            failure.set(null);
            acknowledged = new CountDownLatch(1);
            reply.set(new CompletableFuture<>());
            resumed = new CompletableFuture<>();
            generation = gen;
            stats.status(MigrationStats.Status.POSTCOPY_RECOVER);
            Connection c = null;
            try {
                c = Transports.connect(target, new TransportContext().layout(old.layout()).handler(handler(gen)));
                connection = c;
                c.urgent().sendControl(MemorySegment.ofArray((Protocol.POSTCOPY_RECOVER + " " + session).getBytes(StandardCharsets.UTF_8)));
                long waitNs = Math.max(TimeUnit.SECONDS.toNanos(5), deadline - System.nanoTime());
                resumed.get(waitNs, TimeUnit.NANOSECONDS); // the handler rebuilt the pending pages
                stats.postcopyRecovered(System.nanoTime() - pausedAt);
                uri = target;
                return c;
            } catch (TransportException | ExecutionException | java.util.concurrent.TimeoutException e) {
                lastError = e instanceof ExecutionException ee && ee.getCause() != null ? ee.getCause().getMessage() : e.getMessage();
                generation = gen + 1;
                if (c != null) {
                    transferredBefore += c.stats().bytesSent();
                    c.close();
                }
                stats.status(MigrationStats.Status.POSTCOPY_PAUSED);
                String next = resumeRequests.poll(backoffMs, TimeUnit.MILLISECONDS);
                if (next != null && !resumeRequests.offer(next)) {
                    throw new IllegalStateException("resume request lost"); // cannot happen: we just took one
                }
                backoffMs = Math.min(1000, backoffMs * 2);
            }
        }
    }

    /** Sends the pages still to come as discard bitmaps: the destination drops its copies of them. */
    private static void sendDiscard(Connection conn, int regionId, DirtyBitmap d) {
        Protocol.encodeBitmap(Protocol.POSTCOPY_DISCARD, regionId, d.wordCount(), d::word, m -> conn.background().sendControl(m));
    }

    private void resumeAfterFailure(boolean paused) {
        if (postcopyCommitted) {
            // The guest may have run on the destination: its state is split between the hosts.
            // Resuming it here would run two diverging copies; it stays paused until recovery.
            stats.postcopyFailed();
            return;
        }
        guest.throttle(0);
        if (paused) {
            guest.resume();
        }
    }

    /** Thrown inside the engine for cancellation; never escapes {@link #run}. */
    private static final class CancelledException extends RuntimeException {
        CancelledException(String m) {
            super(m, null, false, false);
        }
    }

    private List<DirtyLogSource> startTracking(List<DirtyLogSource> trackers) {
        for (GuestRegion r : regions) {
            String cause = UffdWriteTracker.unavailabilityCause(r.backing());
            if (cause != null) {
                throw new IllegalStateException("cannot track writes to region '" + r.name() + "': " + cause);
            }
            UffdWriteTracker t = UffdWriteTracker.open(r);
            synchronized (trackers) {
                trackers.add(t);
            }
            t.start();
        }
        trackingStartNs = System.nanoTime();
        return trackers;
    }

    /**
     * Tells the destination which 64 MiB chunks hold data here (from the kernel's bookkeeping,
     * without reading memory), so it populates only those ahead of the stream.
     */
    private void sendPopulationHints(Connection conn) {
        for (int r = 0; r < regions.size(); r++) {
            if (shared.contains(r)) {
                continue; // nothing will be written there
            }
            GuestRegion region = regions.get(r);
            long chunkPages = Math.max(1, Protocol.POPULATE_CHUNK_BYTES / region.pageSize());
            long chunks = (region.pageCount() + chunkPages - 1) / chunkPages;
            for (long first = 0; first < chunks; first += Protocol.POPULATE_CHUNKS_PER_MESSAGE) {
                long n = Math.min(Protocol.POPULATE_CHUNKS_PER_MESSAGE, chunks - first);
                byte[] bits = new byte[(int) ((n + 7) / 8)];
                boolean any = false;
                for (long i = 0; i < n; i++) {
                    long from = (first + i) * chunkPages;
                    long to = Math.min(region.pageCount(), from + chunkPages);
                    if (region.nextPopulatedPage(from, to) < to) {
                        bits[(int) (i >>> 3)] |= (byte) (1 << (i & 7));
                        any = true;
                    }
                }
                if (any) {
                    String msg = Protocol.POPULATE + " " + r + " " + chunkPages + " " + first + " " + java.util.HexFormat.of().formatHex(bits);
                    conn.urgent().sendControl(MemorySegment.ofArray(msg.getBytes(StandardCharsets.UTF_8)));
                }
            }
        }
    }

    private static void stopTracking(List<DirtyLogSource> trackers) {
        for (DirtyLogSource t : trackers) {
            t.stop();
        }
    }

    private long collect(List<DirtyLogSource> trackers, List<DirtyBitmap> bitmaps) {
        long n = 0;
        for (int i = 0; i < trackers.size(); i++) {
            if (!shared.contains(i)) {
                trackers.get(i).collect(bitmaps.get(i));
                n += bitmaps.get(i).count();
            }
        }
        stats.dirtySync();
        return n;
    }

    private long dirtyBytes(List<DirtyBitmap> bitmaps) {
        long b = 0;
        for (int i = 0; i < bitmaps.size(); i++) {
            if (!shared.contains(i)) {
                b += bitmaps.get(i).count() * regions.get(i).pageSize();
            }
        }
        return b;
    }

    private long totalPages() {
        long n = 0;
        for (GuestRegion r : regions) {
            n += r.pageCount();
        }
        return n;
    }

    /** Bandwidth from a round big enough to mean something; else keep the old estimate (1 GB/s before any). */
    private long measure(long bytes, long ns, long previous) {
        long bw = previous;
        if (bytes >= 8L << 20 || previous < 0) {
            bw = bytes >= 8L << 20 ? (long) (bytes * 1e9 / Math.max(1, ns)) : 1_000_000_000L;
        }
        stats.bandwidth(bw);
        return bw;
    }

    /**
     * Classifies and sends one round, every page (bulk) or the dirty ones, one worker per
     * background channel ({@link RoundSender}); then ends it on the background lane.
     */
    private void sendRound(Connection conn, ExecutorService scan, List<DirtyBitmap> bitmaps, boolean bulk)
            throws InterruptedException {
        roundSender.sendRound(conn, scan, bitmaps, shared, bulk);
        conn.background().sendRoundEnd(nextRound++);
        conn.background().flush();
    }

    private void checkAlive() {
        TransportException f = failure.get();
        if (f != null) {
            throw new TransportException(f.kind(), f.getMessage(), f);
        }
        String c = cancelReason;
        if (c != null) {
            throw new CancelledException(c);
        }
    }

    /** Handler of the connection of generation {@code gen}: once it is replaced, its events are ignored. */
    private MessageHandler handler(int gen) {
        return new MessageHandler() {
            @Override
            public void onComplete() {
                if (gen == generation) {
                    acknowledged.countDown();
                }
            }

            @Override
            public void onControl(LaneKind lane, MemorySegment payload) {
                if (gen != generation) {
                    return;
                }
                String text = new String(payload.asSlice(0, Math.min(payload.byteSize(), 128)).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (text.startsWith(Protocol.POSTCOPY_RESUME_END)) {
                    resumeEnd();
                } else if (text.startsWith(Protocol.POSTCOPY_RESUME + " ")) {
                    List<DirtyBitmap> got = received;
                    Protocol.BitmapChunk chunk = Protocol.decodeBitmap(payload, Protocol.POSTCOPY_RESUME, regions.size(),
                            i -> regions.get(i).pageCount());
                    for (long i = 0; i < chunk.words(); i++) {
                        got.get(chunk.regionId()).orWordAtomic(chunk.firstWord() + i, chunk.word(i));
                    }
                    return;
                }
                text = new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (text.equals(Protocol.POSTCOPY_RUNNING)) {
                    postcopyRunning.complete(null);
                } else if (text.startsWith(Protocol.POSTCOPY_STATS + " ")) {
                    // Parsed, never pasted: the destination's text reaches our JSON and terminal only as JSON values.
                    try {
                        postcopyStats = Json.parseObject(text.substring(Protocol.POSTCOPY_STATS.length() + 1), 64 * 1024,
                                "the destination's postcopy-stats");
                    } catch (IllegalArgumentException e) {
                        postcopyStats = Json.object().put("error", e.getMessage());
                    }
                } else if (text.startsWith(Protocol.VERIFY_PROGRESS + " ")) {
                    ProgressDeadline d = destinationVerify;
                    if (d != null) {
                        d.progress(Protocol.progressDone(text.substring(Protocol.VERIFY_PROGRESS.length() + 1)), System.nanoTime());
                    }
                } else if (!text.equals(Protocol.POSTCOPY_RESUME_END)) {
                    reply.get().complete(text);
                }
            }

            @Override
            public void onPageRequest(int regionId, long firstPage, int pageCount) {
                if (gen != generation) {
                    return;
                }
                // A postcopy fault at the destination: answer ahead of the background push, each page once.
                List<DirtyBitmap> pending = postcopyPending;
                Connection c = connection;
                if (pending == null || c == null) {
                    return; // not in postcopy, or paused: the destination asks again once resumed
                }
                postcopyRequests.incrementAndGet();
                DirtyBitmap d = pending.get(regionId);
                for (long p = firstPage; p < firstPage + pageCount; p++) {
                    // A page the push took already may still be queued behind megabytes of bulk data: send
                    // it here too, the destination keeps whichever copy comes first and drops the other.
                    if (!d.testAndClear(p)) {
                        postcopyPagesInFlight.incrementAndGet();
                    }
                    c.urgent().sendPages(regionId, p, 1);
                    postcopyPagesAnswered.incrementAndGet();
                }
                // Favour the neighbourhood of the fault in the background push (spatial locality); the
                // push workers take the faults in turn.
                java.util.concurrent.atomic.AtomicLongArray hints = pushHints;
                long next = firstPage + pageCount;
                if (next < regions.get(regionId).pageCount()) {
                    hints.set((int) Long.remainderUnsigned(postcopyRequests.get(), hints.length()), ((long) regionId << 48) | next);
                }
            }

            @Override
            public void onError(TransportException error) {
                if (gen != generation) {
                    return;
                }
                failure.compareAndSet(null, error);
                acknowledged.countDown();
                reply.get().completeExceptionally(error);
                resumed.completeExceptionally(error);
            }
        };
    }

    /**
     * Recovery: the destination's received bitmap is complete. Every page it does not hold is
     * pending again; runs on the urgent lane's thread, so the page requests that follow the
     * bitmap on that lane find the pending pages rebuilt.
     */
    private void resumeEnd() {
        List<DirtyBitmap> got = received;
        CompletableFuture<Void> r = resumed;
        if (got == null || postcopyPending != null) {
            r.completeExceptionally(new IllegalStateException("postcopy-resume-end while not recovering"));
            return;
        }
        List<DirtyBitmap> pending = new ArrayList<>();
        for (int i = 0; i < got.size(); i++) {
            DirtyBitmap have = got.get(i);
            DirtyBitmap p = DirtyBitmap.allocate(have.pageCount(), Arena.ofAuto());
            p.markAll();
            for (long w = 0; w < have.wordCount(); w++) {
                long h = have.word(w);
                if (h != 0) {
                    p.take(w, h);
                }
            }
            pending.add(p);
        }
        stats.remainingBytes(dirtyBytes(pending));
        postcopyPending = pending;
        postcopyRunning.complete(null); // the destination resumed, so it had started the guest
        r.complete(null);
    }

    /**
     * Before the final round (the guest is paused): tells the destination which checksum chunks
     * that round writes, so that it checksums every other chunk while the round still arrives.
     * On the background lane after the last round end, so every earlier page is placed before the
     * destination reads it.
     */
    private void sendFinalRoundChunks(Connection conn, List<DirtyBitmap> bitmaps) {
        for (int r = 0; r < regions.size(); r++) {
            GuestRegion region = regions.get(r);
            long chunkPages = RamChecksum.chunkPages(region);
            long chunks = RamChecksum.chunks(region);
            long[] written = new long[(int) ((chunks + 63) / 64)];
            DirtyBitmap dirty = bitmaps.get(r);
            for (long c = 0; c < chunks; c++) {
                long from = c * chunkPages;
                long to = Math.min(region.pageCount(), from + chunkPages);
                if (dirty.nextDirty(from, to) < to) {
                    written[(int) (c >>> 6)] |= 1L << c; // shift distance is c mod 64
                }
            }
            // Every message is sent, all-zero ones too: each one releases the chunks of its range.
            Protocol.encodeBitmap(Protocol.VERIFY_FINAL, r, written.length, w -> written[(int) w], conn.background()::sendControl, false);
        }
    }

    /**
     * After completion (the guest stays paused, so the source RAM is stable): verify-begin, then
     * the source checksums its RAM where it is cheap ({@link RamChecksum}) and sends the CRC32C of
     * every region, while the destination checksums its own; then waits for the verdict as long as
     * the destination reports progress ({@link MigrationConfig#verifyStallTimeoutNs()} without any
     * ends the wait). Or, without verification, just says "done".
     */
    private void exchangeVerification(Connection conn) {
        if (!config.verify()) {
            try {
                conn.urgent().sendControl(MemorySegment.ofArray(Protocol.DONE.getBytes(StandardCharsets.UTF_8)));
            } catch (TransportException e) {
                // One verdict: the acknowledgement arrived, so the migration succeeded; "done" is a courtesy.
                System.err.println("pagewire: after the migration completed, could not say done: " + PeerText.escape(e.getMessage()));
            }
            return;
        }
        long t0 = System.nanoTime();
        ProgressDeadline peer = new ProgressDeadline(config.verifyStallTimeoutNs(), t0);
        destinationVerify = peer;
        long readBytes = -1;
        try (RamChecksum sum = new RamChecksum(regions, config.scanThreads(), "pagewire-verify-")) {
            conn.urgent().sendControl(MemorySegment.ofArray(Protocol.VERIFY_BEGIN.getBytes(StandardCharsets.UTF_8)));
            sum.submitAll();
            long[] crcs = sum.await(Protocol.VERIFY_PROGRESS_INTERVAL_NS, done -> conn.urgent().sendControl(Protocol.progress(done, sum.totalBytes())));
            readBytes = sum.readBytes();
            StringBuilder msg = new StringBuilder(Protocol.VERIFY);
            for (long crc : crcs) {
                msg.append(' ').append(Long.toHexString(crc));
            }
            conn.urgent().sendControl(MemorySegment.ofArray(msg.toString().getBytes(StandardCharsets.UTF_8)));
            // The destination may have finished long ago and waited for these: the stall clock starts now.
            peer.restart(System.nanoTime());
            String answer = awaitVerdict(conn, peer);
            verified = answer.equals(Protocol.VERIFIED);
            verification = Protocol.escape(answer);
        } catch (ExecutionException e) {
            verified = false;
            verification = "no verdict: " + (e.getCause() instanceof TransportException t ? "the connection failed: " + t.getMessage()
                    : "the source could not checksum its RAM: " + e.getCause());
        } catch (TransportException e) {
            verified = false;
            verification = "no verdict from the destination: the connection failed: " + e.getMessage();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            verified = false;
            verification = "interrupted";
        } finally {
            destinationVerify = null;
        }
        stats.verified(System.nanoTime() - t0, readBytes);
    }

    /**
     * Waits for the destination's verdict while it shows progress.
     *
     * @return the verdict; or a reason when the destination reported no progress within the stall timeout
     * @throws TransportException when the connection failed (after completion the transport does
     *                            not tell the handler, so it is asked here)
     */
    private String awaitVerdict(Connection conn, ProgressDeadline peer) throws InterruptedException, ExecutionException {
        while (true) {
            TransportException f = conn.failure();
            if (f != null) {
                throw new TransportException(f.kind(), f.getMessage(), f);
            }
            long left = peer.remainingNs(System.nanoTime());
            if (left <= 0) {
                return "no verdict from the destination: its checksum made no progress for " + TimeUnit.NANOSECONDS.toSeconds(peer.stallNs())
                        + " s (last reported: " + (peer.value() < 0 ? "none" : peer.value() + " bytes done") + ")";
            }
            try {
                return reply.get().get(Math.min(left, Protocol.VERIFY_PROGRESS_INTERVAL_NS), TimeUnit.NANOSECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
                // not yet: look at the connection and the progress again
            }
        }
    }

    private static <T> T join(CompletableFuture<T> f) {
        try {
            return f.join();
        } catch (java.util.concurrent.CompletionException e) {
            if (e.getCause() instanceof RuntimeException re) {
                throw re;
            }
            throw e;
        }
    }
}
