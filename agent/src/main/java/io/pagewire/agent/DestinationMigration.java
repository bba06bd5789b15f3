package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.postcopy.PostcopyRegion;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.RegionFile;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The destination side of a precopy migration: listens, populates its RAM in bulk ahead of the
 * stream, lets the transport place pages, keeps account of every page (normal, zero or
 * ballooned), and acknowledges completion only when every page of the layout is accounted for.
 * On any failure it reports failure, never done.
 *
 * <h2>Threading</h2>
 * The handler runs on transport threads, several at once for different pages; the bitmaps are
 * updated with atomic word operations. Rounds are ordered by the transport's round-end barrier,
 * so a page's zero run and its data never race.
 */
public final class DestinationMigration implements AutoCloseable {
    private static final long POPULATE_CHUNK = 64L << 20;
    /** After completion, how long the source may take to begin verification or say it is done. */
    private static final long VERDICT_WAIT_NS = TimeUnit.SECONDS.toNanos(60);
    private final AtomicLong completedAt = new AtomicLong();

    private final List<GuestRegion> regions;
    private final Arena arena = Arena.ofShared();
    private final DirtyBitmap[] accounted;
    /** Regions whose memory the source handed over (unix:// share-memory): mapped here, never sent. */
    private final java.util.Set<Integer> adopted = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final DirtyBitmap[] hasData;
    /** Postcopy, MINOR mode: pages whose stale data was kept in the page cache at their discard. */
    private final DirtyBitmap[] stale;
    private final MigrationStats stats = new MigrationStats("destination");
    /** Postcopy state per region, or null without postcopy. */
    private final PostcopyRegion[] postcopyRegions;
    private volatile boolean postcopyStarted;
    private volatile java.util.function.Supplier<int[]> guestStarter;
    private volatile Thread[] faultThreads = new Thread[0];
    private volatile boolean faultsStop;
    private final java.util.Set<Long>[] requested;
    private final java.util.concurrent.ConcurrentHashMap<Long, Long> faultStartNs = new java.util.concurrent.ConcurrentHashMap<>();
    /** The scheduler slice the postcopy fault thread asks for (a short one: it runs for microseconds per fault). */
    private static final long FAULT_THREAD_SLICE_NS = TimeUnit.MICROSECONDS.toNanos(100);
    /** Faults asked of the source: when the request was written (the fault path's stages, docs/postcopy.md). */
    private final java.util.concurrent.ConcurrentHashMap<Long, Long> requestSentNs = new java.util.concurrent.ConcurrentHashMap<>();
    /** Stages of a requested page: fault read to request written; request written to its page's data landed; landed to mapped. */
    private final org.HdrHistogram.ConcurrentHistogram stageRequest = new org.HdrHistogram.ConcurrentHistogram(TimeUnit.SECONDS.toNanos(60), 2);
    private final org.HdrHistogram.ConcurrentHistogram stageAnswer = new org.HdrHistogram.ConcurrentHistogram(TimeUnit.SECONDS.toNanos(60), 2);
    private final org.HdrHistogram.ConcurrentHistogram stagePlace = new org.HdrHistogram.ConcurrentHistogram(TimeUnit.SECONDS.toNanos(60), 2);
    /** Reads of the userfaultfd that returned faults (each a wake-up of the fault thread), and the faults they returned. */
    private final AtomicLong faultReads = new AtomicLong();
    private final AtomicLong faultsRead = new AtomicLong();
    private final org.HdrHistogram.ConcurrentHistogram faultLatency = new org.HdrHistogram.ConcurrentHistogram(TimeUnit.SECONDS.toNanos(60), 3);
    /** The same faults by interval, for HdrHistogram interval logs (latency over time). */
    private final org.HdrHistogram.Recorder faultLatencyIntervals = new org.HdrHistogram.Recorder(TimeUnit.SECONDS.toNanos(60), 3);
    private volatile io.pagewire.ramtracker.blocktime.BlocktimeTracker blocktime;
    private volatile int[] vcpuThreadIds = new int[0];
    private final AtomicLong pageRequests = new AtomicLong();
    /** Page requests that met a broken connection (asked again after recovery). */
    private final AtomicLong requestsDeferred = new AtomicLong();
    /** Pages that arrived already placed (a requested page the push had sent too: the second copy is dropped). */
    private final AtomicLong duplicatePages = new AtomicLong();
    /** Postcopy recovery: the pages held here when the last recovery's bitmap was sent (null before any). */
    private volatile DirtyBitmap[] heldAtResume;
    /** Pages that arrived after a recovery although the bitmap said they were held here (must stay 0). */
    private final AtomicLong heldPagesResent = new AtomicLong();
    /** The connection page requests go to (replaced by postcopy recovery). */
    private volatile Connection current;
    /** Postcopy: whether page data may be placed (false while paused, until a connection resumed). */
    private volatile boolean acceptingPages;
    /** Postcopy finished (regions closed); placement and the close exclude each other through finishLock. */
    private boolean postcopyFinished;
    private final java.util.concurrent.locks.ReentrantReadWriteLock finishLock = new java.util.concurrent.locks.ReentrantReadWriteLock();
    /** The migration's id, from the source's session message. */
    private volatile String session;
    /** Connection generation: events of a connection that was replaced are ignored. */
    private volatile int generation;
    private final Object events = new Object();
    private boolean finishedEvent;
    private boolean resumedEvent;
    private TransportException lostEvent;
    private final AtomicLong recoveries = new AtomicLong();
    /** Page requests sent again by recoveries (faults that were waiting when the connection broke). */
    private final AtomicLong requestsAgain = new AtomicLong();
    private volatile long recoveryTimeoutNs = TimeUnit.SECONDS.toNanos(60);
    private final AtomicLong localFaults = new AtomicLong();
    private volatile long postcopyStartNs;
    private final AtomicLong rounds = new AtomicLong();
    private volatile boolean stopPopulating;
    private Thread populator;
    /** Hinted chunks are populated in pieces of this size, skipping pieces whose pages all arrived. */
    private static final long POPULATE_PIECE = 2L << 20;
    private final DestinationVerifier verifier;
    /** Every page arrived and, with postcopy, userfaultfd let go: set before the completion acknowledgement. */
    private volatile boolean everyPageHere;
    private volatile String populateError;
    private volatile Populate populateMode = Populate.NONE;
    private final Object hintLock = new Object();
    private final java.util.BitSet[] wantedChunks;
    private final long[] hintChunkPages;

    /** @param ram the destination's guest RAM, with the same regions as the source */
    public DestinationMigration(GuestRam ram) {
        this(ram, false);
    }

    /**
     * @param ram the destination's guest RAM, with the same regions as the source
     * @param postcopy prepare for postcopy: pages are placed with userfaultfd once the guest runs here
     *                 (anonymous regions: MISSING + UFFDIO_COPY; memfd/shmem: MINOR over a second mapping)
     */
    @SuppressWarnings("unchecked")
    public DestinationMigration(GuestRam ram, boolean postcopy) {
        this.regions = ram.regions();
        this.postcopyRegions = postcopy ? new PostcopyRegion[regions.size()] : null;
        if (postcopy) {
            for (int i = 0; i < regions.size(); i++) {
                postcopyRegions[i] = PostcopyRegion.open(regions.get(i));
            }
        }
        this.requested = new java.util.Set[regions.size()];
        for (int i = 0; i < requested.length; i++) {
            requested[i] = java.util.concurrent.ConcurrentHashMap.newKeySet();
        }
        this.accounted = new DirtyBitmap[regions.size()];
        this.hasData = new DirtyBitmap[regions.size()];
        this.stale = new DirtyBitmap[regions.size()];
        this.wantedChunks = new java.util.BitSet[regions.size()];
        this.hintChunkPages = new long[regions.size()];
        long total = 0;
        for (int i = 0; i < regions.size(); i++) {
            accounted[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            hasData[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            if (postcopy) {
                stale[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            }
            total += regions.get(i).sizeBytes();
        }
        stats.totalBytes(total);
        stats.pageSize(regions.getFirst().pageSize());
        this.verifier = new DestinationVerifier(regions, stats, this::signalFinished);
    }

    /** @return the transport's view of a guest RAM's regions */
    public static RamLayout layout(GuestRam ram) {
        List<RamRegion> rs = new ArrayList<>();
        for (GuestRegion r : ram.regions()) {
            rs.add(RamRegion.of(r.name(), r.memory().asSlice(0, r.sizeBytes()), r.pageSize()));
        }
        return RamLayout.of(rs);
    }

    /** Listens on {@code uri} with this RAM's layout (in postcopy mode: second mappings and placers). */
    public Listener listen(GuestRam ram, String uri) {
        RamLayout layout = layout(ram);
        if (postcopyRegions != null) {
            List<RamRegion> rs = new ArrayList<>();
            for (int i = 0; i < regions.size(); i++) {
                int id = i;
                RamRegion r = layout.region(i);
                rs.add(new RamRegion(r.descriptor(), postcopyRegions[i].alias(), new io.pagewire.transport.spi.PagePlacer() {
                    @Override
                    public void place(int regionId, long first, int count, MemorySegment data) {
                        DestinationMigration.this.place(id, first, count, data);
                    }

                    @Override
                    public MemorySegment reserve(int regionId, long first, int count) {
                        return DestinationMigration.this.reserve(id, first, count);
                    }

                    @Override
                    public void abandon(int regionId, long first, int count) {
                        postcopyRegions[id].abandon(first, count);
                    }
                }));
            }
            layout = RamLayout.of(rs);
        }
        return Transports.listen(uri, new TransportContext().layout(layout));
    }

    /**
     * Postcopy: called (on a transport thread) when the source switches to postcopy, after the stale
     * pages were discarded and userfaultfd armed; starts the guest here and returns its vCPU threads'
     * kernel ids (for blocktime), or an empty array when there is no guest to account for.
     */
    public void onPostcopyStart(java.util.function.Supplier<int[]> startGuest) {
        this.guestStarter = startGuest;
    }

    /** Placement of received page data (postcopy mode): plain writes before the switch, claim-once placement after. */
    private void place(int regionId, long first, int count, MemorySegment data) {
        PostcopyRegion pc = postcopyRegions[regionId];
        long pageSize = regions.get(regionId).pageSize();
        if (postcopyStarted && !acceptingPages) {
            // Postcopy is paused: only a connection that resumed this migration may place pages.
            throw new IllegalStateException("page data on a connection that has not resumed this postcopy migration");
        }
        boolean reserved = pc.isReserved(first, data);
        if (!postcopyStarted) {
            // The guest does not run here yet, and round ends keep this ahead of the switch.
            if (!reserved) {
                MemorySegment.copy(data, 0, pc.alias(), first * pageSize, count * pageSize);
            }
            return;
        }
        finishLock.readLock().lock();
        try {
            if (postcopyFinished) {
                // Every page is accounted and userfaultfd let go: a late urgent answer (to a request
                // for a page the push had taken) is a second copy.
                duplicatePages.addAndGet(count);
                return;
            }
            long landed = System.nanoTime();
            long placedNow = reserved ? pc.placeReserved(first, count, page -> placed(regionId, page, landed))
                    : pc.place(first, count, data, page -> placed(regionId, page, landed));
            if (placedNow < count) {
                duplicatePages.addAndGet(count - placedNow);
            }
        } finally {
            finishLock.readLock().unlock();
        }
    }

    /**
     * Memory a background frame may be received into directly (no staging copy): its place in the
     * second mapping, claimed for it in MINOR mode after the switch; null to stage it. Not after
     * postcopy finished or while paused (that data would be dropped or refused).
     */
    private MemorySegment reserve(int regionId, long first, int count) {
        if (postcopyStarted && !acceptingPages) {
            return null; // place() refuses it with a clear error
        }
        finishLock.readLock().lock();
        try {
            return postcopyFinished ? null : postcopyRegions[regionId].reserve(first, count);
        } finally {
            finishLock.readLock().unlock();
        }
    }

    /** A page was mapped into the guest: ends the accounting of faults on it. */
    private void placed(int regionId, long page) {
        placed(regionId, page, 0);
    }

    /** @param landedNs when the page's data had landed here (0: not known) */
    private void placed(int regionId, long page, long landedNs) {
        long now = System.nanoTime();
        var bt = blocktime;
        if (bt != null) {
            bt.pageArrived(page, now);
        }
        // Most placed pages were never faulted on: skip the boxed lookup while nobody waits.
        Long t = faultStartNs.isEmpty() ? null : faultStartNs.remove(((long) regionId << 48) | page);
        if (t != null) {
            Long sent = requestSentNs.isEmpty() ? null : requestSentNs.remove(((long) regionId << 48) | page);
            if (sent != null && landedNs != 0 && landedNs >= sent) {
                stageAnswer.recordValue(Math.min(landedNs - sent, stageAnswer.getHighestTrackableValue()));
                stagePlace.recordValue(Math.min(now - landedNs, stagePlace.getHighestTrackableValue()));
            }
            faultLatency.recordValue(Math.min(now - t, faultLatency.getHighestTrackableValue()));
            faultLatencyIntervals.recordValue(Math.min(now - t, faultLatency.getHighestTrackableValue()));
            MigrationEvents.postcopyFault(now - t, regionId, page, faultLatency.getTotalCount());
        }
    }

    /** Postcopy switch: stale pages were discarded; arm userfaultfd, start the fault threads and the guest. */
    private void startPostcopy(Connection c) {
        postcopyStartNs = System.nanoTime();
        acceptingPages = true;
        for (PostcopyRegion pc : postcopyRegions) {
            pc.start();
        }
        postcopyStarted = true;
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < postcopyRegions.length; i++) {
            int id = i;
            ts.add(Thread.ofPlatform().daemon().name("pagewire-faults-" + regions.get(i).name()).start(() -> faultLoop(id)));
        }
        // Pages that arrived in precopy are in the page cache but not yet mapped into the guest:
        // map them in bulk so the guest rarely takes a MINOR fault for them.
        ts.add(Thread.ofPlatform().daemon().name("pagewire-postcopy-map").start(this::mapPresentPages));
        faultThreads = ts.toArray(new Thread[0]);
        java.util.function.Supplier<int[]> starter = guestStarter;
        int[] tids = starter == null ? new int[0] : starter.get();
        blocktime = tids.length == 0 ? null : new io.pagewire.ramtracker.blocktime.BlocktimeTracker(tids.length, Math.max(64, tids.length * 4));
        vcpuThreadIds = tids;
        stats.status(MigrationStats.Status.POSTCOPY_ACTIVE);
        c.urgent().sendControl(MemorySegment.ofArray(Protocol.POSTCOPY_RUNNING.getBytes(StandardCharsets.UTF_8)));
    }

    private void mapPresentPages() {
        try {
            for (int r = 0; r < regions.size() && !faultsStop; r++) {
                int id = r;
                DirtyBitmap data = hasData[r];
                long n = regions.get(r).pageCount();
                for (long p = data.nextDirty(0, n); p < n && !faultsStop; ) {
                    long end = Math.min(data.nextClean(p, n), p + 512);
                    postcopyRegions[r].mapPresent(p, end - p, x -> placed(id, x));
                    p = data.nextDirty(end, n);
                }
            }
        } catch (RuntimeException e) {
            if (!faultsStop) {
                System.err.println("pagewire: mapping received pages into the guest failed; MINOR faults will map them: " + e.getMessage());
            }
        }
    }

    private void faultLoop(int regionId) {
        PostcopyRegion pc = postcopyRegions[regionId];
        MemorySegment buf = Arena.ofAuto().allocate(io.pagewire.ramtracker.linux.Userfaultfd.MSG_SIZE * 64L, 8);
        // A vCPU waits on this thread: ask the scheduler to run it soon after a fault wakes it (a short slice,
        // unprivileged on Linux 6.12+, as the transports' urgent threads), and to end its polls on time.
        String why = PostcopyRegion.tuneFaultThread(FAULT_THREAD_SLICE_NS);
        if (why != null) {
            System.getLogger(DestinationMigration.class.getName()).log(System.Logger.Level.DEBUG, "postcopy fault thread not tuned: " + why);
        }
        try {
            while (!faultsStop) {
                int n = pc.readFaults(buf, 100, (page, tid, minor) -> fault(regionId, pc, page, tid, minor));
                if (n > 0) {
                    faultReads.incrementAndGet();
                    faultsRead.addAndGet(n);
                }
            }
        } catch (RuntimeException e) {
            if (!faultsStop) {
                current.abort("postcopy fault handling failed at the destination: " + e.getMessage());
            }
        }
    }

    /**
     * One page fault. MINOR: the page is here (from precopy) and current: map it. MISSING: if it is
     * known to be zero, place a zero page; otherwise ask the source, once.
     */
    private void fault(int regionId, PostcopyRegion pc, long page, int tid, boolean minor) {
        long now = System.nanoTime();
        int vcpu = vcpuOf(tid);
        var bt = blocktime;
        if (bt != null && vcpu >= 0) {
            bt.fault(vcpu, page, now);
        }
        faultStartNs.putIfAbsent(((long) regionId << 48) | page, now);
        if (pc.isMapped(page)) {
            placed(regionId, page); // placed between the fault and now: that placement woke it
            return;
        }
        if (pc.isPlaced(page)) {
            return; // being placed (a frame landing in its memory): that placement wakes it and accounts for it
        }
        if (minor && accounted[regionId].isDirty(page)) {
            // Here and current (a stale page's accounting was cleared by its discard): map it.
            localFaults.incrementAndGet();
            pc.mapPresent(page, 1, p -> placed(regionId, p));
            return;
        }
        // Ordered against a zero run arriving now: record the request first, then read the
        // accounting (the zero-run path marks the accounting first, then reads the requests).
        if (!requested[regionId].add(page)) {
            return; // asked already
        }
        if (accounted[regionId].isDirty(page)) {
            localFaults.incrementAndGet();
            pc.placeZero(page, 1, p -> placed(regionId, p));
            return;
        }
        pageRequests.incrementAndGet();
        request(regionId, page);
        long sent = System.nanoTime();
        stageRequest.recordValue(Math.min(sent - now, stageRequest.getHighestTrackableValue()));
        if (!pc.isMapped(page)) {
            requestSentNs.put(((long) regionId << 48) | page, sent);
        }
    }

    /**
     * Sends a page request on the current connection. When that connection is broken the request
     * stays recorded in {@code requested}: a connection that resumes the migration asks again for
     * every requested page still missing; without one the migration fails.
     */
    private void request(int regionId, long page) {
        Connection c = current;
        try {
            c.urgent().sendPageRequest(regionId, page, 1);
        } catch (TransportException e) {
            if (c.failure() == null) {
                throw e; // not a broken connection: a real fault in the request path
            }
            requestsDeferred.incrementAndGet();
        }
    }

    private int vcpuOf(int tid) {
        int[] ids = vcpuThreadIds;
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] == tid) {
                return i;
            }
        }
        return -1;
    }

    /** Postcopy: "postcopy-discard REGION FIRST_WORD" newline, then little-endian bitmap words: these pages are stale here. */
    private void discard(MemorySegment payload) {
        Protocol.BitmapChunk chunk = Protocol.decodeBitmap(payload, Protocol.POSTCOPY_DISCARD, regions.size(), i -> regions.get(i).pageCount());
        int regionId = chunk.regionId();
        long pages = regions.get(regionId).pageCount();
        long runStart = -1;
        long runEnd = -1;
        for (long i = 0; i < chunk.words(); i++) {
            long w = chunk.word(i);
            long base = (chunk.firstWord() + i) * 64;
            while (w != 0) {
                int bit = Long.numberOfTrailingZeros(w);
                int end = Math.min(64, bit + Long.numberOfTrailingZeros(~(w >>> bit)));
                long from = base + bit;
                if (from != runEnd) { // runs that touch across words are discarded as one
                    discardRun(regionId, runStart, runEnd, pages);
                    runStart = from;
                }
                runEnd = base + end;
                w = end == 64 ? 0 : w & (-1L << end);
            }
        }
        discardRun(regionId, runStart, runEnd, pages);
    }

    /**
     * Before postcopy starts: drops every page that never arrived (populated ahead of the stream,
     * or left from before), so that the guest faults on it instead of reading what is there.
     */
    private void discardNeverReceived() {
        for (int r = 0; r < regions.size(); r++) {
            long n = regions.get(r).pageCount();
            DirtyBitmap got = accounted[r];
            for (long p = got.nextClean(0, n); p < n; ) {
                long end = got.nextDirty(p, n);
                discardRun(r, p, end, n);
                p = got.nextClean(end, n);
            }
        }
    }

    private void discardRun(int regionId, long from, long to, long pages) {
        long count = Math.min(to, pages) - from;
        if (from < 0 || count <= 0) {
            return;
        }
        PostcopyRegion pc = postcopyRegions[regionId];
        pc.discard(from, count);
        if (pc.mode() == PostcopyRegion.Mode.MINOR) {
            // The stale data stays in the page cache: remember where, so that a zero run for such a
            // page zeroes it (a page that never held data here reads as zero already).
            DirtyBitmap data = hasData[regionId];
            for (long p = data.nextDirty(from, from + count); p < from + count; ) {
                long end = data.nextClean(p, from + count);
                stale[regionId].markRangeAtomic(p, end - p);
                p = data.nextDirty(end, from + count);
            }
        }
        accounted[regionId].clearRangeAtomic(from, count);
        hasData[regionId].clearRangeAtomic(from, count);
    }

    /** @return the destination's postcopy measurements as JSON text (one object, compact) */
    public String postcopyStatsJson() {
        return Json.write(postcopyStatsNode());
    }

    /** @return the destination's postcopy measurements as a JSON object (docs/postcopy.md names the fields) */
    public tools.jackson.databind.node.ObjectNode postcopyStatsNode() {
        var bt = blocktime;
        long now = System.nanoTime();
        var o = Json.object();
        o.put("postcopy-requests", pageRequests.get());
        o.put("local-faults", localFaults.get());
        o.put("recoveries", recoveries.get());
        o.put("requests-again", requestsAgain.get());
        o.put("requests-deferred", requestsDeferred.get());
        o.put("duplicate-pages", duplicatePages.get());
        o.put("held-pages-resent", heldPagesResent.get());
        o.put("blocktime-ms", bt == null ? 0.0 : Json.round(bt.totalBlockedNs(now) / 1e6, 3));
        var vcpus = o.putArray("vcpu-blocktime-ms");
        if (bt != null) {
            for (int i = 0; i < bt.vcpuCount(); i++) {
                vcpus.add(Json.round(bt.vcpuBlockedNs(i, now) / 1e6, 3));
            }
        }
        o.put("postcopy-ms", postcopyStartNs == 0 ? 0 : (now - postcopyStartNs) / 1_000_000);
        o.put("fault-reads", faultReads.get());
        o.put("faults-read", faultsRead.get());
        var stages = o.putObject("fault-stages-us");
        stage(stages, "request", stageRequest);
        stage(stages, "answer", stageAnswer);
        stage(stages, "place", stagePlace);
        org.HdrHistogram.Histogram h = faultLatency.copy();
        var lat = o.putObject("fault-latency-us");
        lat.put("count", h.getTotalCount());
        lat.put("p50", Json.round(h.getValueAtPercentile(50) / 1e3, 1));
        lat.put("p90", Json.round(h.getValueAtPercentile(90) / 1e3, 1));
        lat.put("p99", Json.round(h.getValueAtPercentile(99) / 1e3, 1));
        lat.put("p99.9", Json.round(h.getValueAtPercentile(99.9) / 1e3, 1));
        lat.put("max", Json.round(h.getMaxValue() / 1e3, 1));
        return o;
    }

    private static void stage(tools.jackson.databind.node.ObjectNode into, String name, org.HdrHistogram.ConcurrentHistogram h) {
        var o = into.putObject(name);
        o.put("count", h.getTotalCount());
        o.put("p50", Json.round(h.getValueAtPercentile(50) / 1e3, 1));
        o.put("p90", Json.round(h.getValueAtPercentile(90) / 1e3, 1));
        o.put("p99", Json.round(h.getValueAtPercentile(99) / 1e3, 1));
    }

    /**
     * @return the faults resolved since the last call (fault read to page mapped, nanoseconds), with
     *     the interval's start and end time stamps set (for {@code HistogramLogWriter})
     */
    public org.HdrHistogram.Histogram faultLatencyInterval() {
        return faultLatencyIntervals.getIntervalHistogram();
    }

    /** @return the fault-latency histogram (fault read to page mapped), in nanoseconds */
    public org.HdrHistogram.Histogram faultLatency() {
        return faultLatency.copy();
    }

    /** How destination RAM is populated. */
    public enum Populate {
        /** Populate the chunks the source says hold data, in order, on a background thread while receiving (default). */
        HINTED,
        /** Populate everything on a background thread while receiving. */
        ALL,
        /** Populate everything before accepting (a pre-populated destination). */
        BEFORE,
        /** Never: page writes fault the memory in. */
        NONE
    }

    /**
     * Starts populating ({@code MADV_POPULATE_WRITE}, 64 MiB at a time) so that pages arriving
     * later land in memory that takes no page fault. Runs in parallel with receiving; a page the
     * stream reaches first is simply faulted in by the transport's write. With {@code BEFORE} it
     * returns when everything is populated.
     */
    public void startPopulating(Populate mode) {
        this.populateMode = mode;
        switch (mode) {
            case NONE -> {
            }
            case BEFORE -> populateAll();
            case ALL -> populator = Thread.ofPlatform().daemon().name("pagewire-populate").start(this::populateAllQuietly);
            case HINTED -> populator = Thread.ofPlatform().daemon().name("pagewire-populate").start(this::populateHinted);
            default -> throw new IllegalArgumentException(mode.toString());
        }
    }

    private void populateAll() {
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            long step = Math.max(1, POPULATE_CHUNK / r.pageSize());
            for (long p = 0; p < r.pageCount() && !stopPopulating; p += step) {
                populate(i, p, Math.min(step, r.pageCount() - p));
            }
        }
    }

    /**
     * Populates pages: through the guest mapping, or in postcopy mode through the second mapping
     * (the guest mapping is userfaultfd's; populating it would fault).
     */
    private void populate(int regionId, long first, long count) {
        if (adopted.contains(regionId)) {
            return; // the source's memory now: populating it would allocate the source's pages
        }
        if (postcopyRegions == null) {
            regions.get(regionId).populate(first, count);
        } else {
            long ps = regions.get(regionId).pageSize();
            io.pagewire.ramtracker.linux.Mappings.populateWrite(postcopyRegions[regionId].alias().asSlice(first * ps, count * ps));
        }
    }

    /**
     * Stops populating and waits for the populate thread: before stale pages are discarded, so
     * that no discarded page is populated again (it would then look present and current).
     */
    private void stopPopulatingAndWait() {
        stopPopulating = true;
        synchronized (hintLock) {
            hintLock.notifyAll();
        }
        Thread t = populator;
        if (t != null && t != Thread.currentThread()) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while stopping the populate thread before postcopy discards", e);
            }
        }
    }

    private void populateAllQuietly() {
        try {
            populateAll();
        } catch (RuntimeException e) {
            populateFailed(e);
        }
    }

    private void populateFailed(RuntimeException e) {
        // Not fatal: pages not populated are faulted in by the writes that place them, only slower.
        populateError = e.getMessage();
        System.err.println("pagewire: populating destination RAM ahead of the stream failed, continuing without: " + e.getMessage());
    }

    /** Populates hinted chunks in region and chunk order as hints arrive; ends when told to stop. */
    private void populateHinted() {
        try {
            while (!stopPopulating) {
                int region = -1;
                long chunk = -1;
                synchronized (hintLock) {
                    for (int r = 0; r < regions.size() && region < 0; r++) {
                        long c = wantedChunks[r] == null ? -1 : wantedChunks[r].nextSetBit(0);
                        if (c >= 0) {
                            region = r;
                            chunk = c;
                            wantedChunks[r].clear((int) c);
                        }
                    }
                    if (region < 0) {
                        hintLock.wait(100);
                        continue;
                    }
                }
                long chunkPages = hintChunkPages[region];
                long first = chunk * chunkPages;
                populateMissing(region, first, Math.min(chunkPages, regions.get(region).pageCount() - first));
            }
        } catch (RuntimeException e) {
            populateFailed(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Populates the 2 MiB pieces of a hinted chunk that still miss a page. A hint says the source
     * populated the chunk, not that it holds data: a guest that wrote zeroes sends zero runs, which
     * outrun this thread by far and need no memory here. Pages accounted for already (placed, zero,
     * ballooned) need no populating either; so the stream, not this thread, decides what is touched.
     */
    private void populateMissing(int regionId, long first, long count) {
        long piece = Math.max(1, POPULATE_PIECE / regions.get(regionId).pageSize());
        DirtyBitmap got = accounted[regionId];
        long end = first + count;
        long from = -1; // start of the pieces to populate, merged into one call
        for (long p = first; p < end && !stopPopulating; p += piece) {
            long q = Math.min(end, p + piece);
            boolean missing = got.nextClean(p, q) < q;
            if (missing && from < 0) {
                from = p;
            } else if (!missing && from >= 0) {
                populate(regionId, from, p - from);
                from = -1;
            }
        }
        if (from >= 0 && !stopPopulating) {
            populate(regionId, from, end - from);
        }
    }

    /** Records a population hint from the source: "REGION CHUNK_PAGES FIRST_CHUNK HEX". */
    private void hint(String args) {
        String[] a = args.split(" ");
        if (a.length != 4) {
            throw new IllegalArgumentException("malformed population hint: " + Protocol.escape(args));
        }
        int region = Integer.parseInt(a[0]);
        long chunkPages = Long.parseLong(a[1]);
        long first = Long.parseLong(a[2]);
        byte[] bits = java.util.HexFormat.of().parseHex(a[3]);
        if (region < 0 || region >= regions.size() || chunkPages < 1 || first < 0) {
            throw new IllegalArgumentException("population hint out of range: " + Protocol.escape(args));
        }
        long chunks = (regions.get(region).pageCount() + chunkPages - 1) / chunkPages;
        synchronized (hintLock) {
            if (wantedChunks[region] == null) {
                wantedChunks[region] = new java.util.BitSet((int) chunks);
                hintChunkPages[region] = chunkPages;
            } else if (hintChunkPages[region] != chunkPages) {
                throw new IllegalArgumentException("population hints with different chunk sizes: " + Protocol.escape(args));
            }
            for (long i = 0; i < 8L * bits.length && first + i < chunks; i++) {
                if ((bits[(int) (i >>> 3)] & (1 << (i & 7))) != 0) {
                    wantedChunks[region].set((int) (first + i));
                }
            }
            hintLock.notifyAll();
        }
    }

    /** @return the verification result ("verified", "mismatch: ...", "unverified: ...", or null when the source asked none) */
    public String verification() {
        return verifier.verdict();
    }

    /** @return why populating ahead of the stream failed, or null */
    public String populateError() {
        return populateError;
    }

    /** @return statistics */
    public MigrationStats stats() {
        return stats;
    }

    /**
     * Accepts one source and receives its migration.
     *
     * @return statistics: completed, or failed with the reason
     */
    public MigrationStats receive(Listener listener, Duration acceptTimeout) throws InterruptedException {
        Connection c = listener.accept(handler(0), acceptTimeout); // its onOpen made the migration ACTIVE
        current = c;
        long received = 0;
        try {
            while (true) {
                TransportException lost;
                synchronized (events) {
                    // The handler signals every event: completion, a verdict asked, the connection's end (onClosed).
                    while (!finishedEvent && lostEvent == null) {
                        if (stats.status() == MigrationStats.Status.COMPLETED) {
                            completedAt.compareAndSet(0, System.nanoTime());
                            long left = completedAt.get() + VERDICT_WAIT_NS - System.nanoTime();
                            if (left <= 0 && !verifier.active()) {
                                finishedEvent = true; // completed; the source never began verification nor said done
                                break;
                            }
                            // A verification running past the wait signals its end (signalFinished); look again within a second.
                            TimeUnit.NANOSECONDS.timedWait(events, left > 0 ? left : TimeUnit.SECONDS.toNanos(1));
                        } else {
                            events.wait();
                        }
                    }
                    if (finishedEvent) {
                        break;
                    }
                    lost = lostEvent;
                    lostEvent = null;
                }
                if (stats.status() == MigrationStats.Status.COMPLETED) {
                    // One verdict: the source received the acknowledgement, so the migration succeeded, whatever
                    // happens to the connection afterwards. A verification it had begun cannot finish now.
                    verifier.abandon(Protocol.UNVERIFIED + ": the connection ended before verification finished: " + lost.getMessage());
                    System.err.println("pagewire: after the migration completed: " + PeerText.escape(lost.getMessage()));
                    break;
                }
                if (!postcopyStarted || recoveryTimeoutNs == 0
                        || !(lost.kind() == TransportException.Kind.CONNECTION_LOST || lost.kind() == TransportException.Kind.TIMEOUT)) {
                    stats.failed(lost.getMessage(), lost.kind());
                    break;
                }
                // Postcopy lost its connection (QEMU: postcopy-paused). The guest's faulting threads wait;
                // keep listening for the source to resume the migration over a new connection.
                received += c.stats().bytesReceived();
                c.close(); // its threads are gone before the received bitmap is taken
                Connection next = awaitRecovery(listener, lost);
                if (next == null) {
                    break; // failed: stats say why
                }
                c = next;
            }
            stats.transferred(received + (c.isClosed() ? 0 : c.stats().bytesReceived()));
            return stats;
        } finally {
            stopPopulating = true;
            c.close();
        }
    }

    /** How long a postcopy whose connection broke waits for the source to resume it (0: it fails at once; default 60 s). */
    public void postcopyRecoveryTimeout(Duration timeout) {
        if (timeout.isNegative()) {
            throw new IllegalArgumentException("postcopy recovery timeout " + timeout + " is negative");
        }
        recoveryTimeoutNs = timeout.toNanos();
    }

    /**
     * Postcopy-paused: accepts connections until one resumes this migration ("postcopy-recover
     * SESSION", answered by the handler) or the recovery timeout passes.
     *
     * @return the connection that resumed, or null when the migration failed (stats say why)
     */
    private Connection awaitRecovery(Listener listener, TransportException lost) throws InterruptedException {
        long pausedAt = System.nanoTime();
        long deadline = pausedAt + recoveryTimeoutNs;
        stats.postcopyPaused(lost.getMessage());
        while (true) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                stats.failed("postcopy-paused: the source did not resume the migration within " + TimeUnit.NANOSECONDS.toSeconds(recoveryTimeoutNs)
                        + " s; the connection was lost with: " + lost.getMessage());
                return null;
            }
            int gen = ++generation;
            Connection c;
            try {
                c = listener.accept(handler(gen), Duration.ofNanos(left));
            } catch (TransportException e) {
                if (e.kind() == TransportException.Kind.TIMEOUT) {
                    continue; // the deadline check above ends it
                }
                if (e.kind() == TransportException.Kind.CLOSED || e.kind() == TransportException.Kind.CONNECT_FAILED) {
                    stats.failed("postcopy-paused, and the listener failed: " + e.getMessage() + "; the connection was lost with: " + lost.getMessage());
                    return null;
                }
                continue; // a handshake that failed: wait for the next
            }
            stats.status(MigrationStats.Status.POSTCOPY_RECOVER);
            // The new connection must say postcopy-recover first; the handler answers and signals.
            boolean ok;
            TransportException failedAgain;
            synchronized (events) {
                long waitUntil = Math.min(deadline, System.nanoTime() + TimeUnit.SECONDS.toNanos(10));
                while (!resumedEvent && lostEvent == null && !finishedEvent && System.nanoTime() - waitUntil < 0) {
                    TimeUnit.NANOSECONDS.timedWait(events, Math.max(1, waitUntil - System.nanoTime()));
                }
                ok = resumedEvent;
                resumedEvent = false;
                failedAgain = lostEvent;
                lostEvent = null;
            }
            if (ok) {
                recoveries.incrementAndGet();
                stats.postcopyRecovered(System.nanoTime() - pausedAt);
                return c;
            }
            c.abort(failedAgain != null ? "lost while resuming: " + failedAgain.getMessage()
                    : "the connection did not resume this postcopy migration (expected " + Protocol.POSTCOPY_RECOVER + " " + session + ")");
            c.close();
            stats.status(MigrationStats.Status.POSTCOPY_PAUSED);
        }
    }

    /**
     * A new connection resumes the paused postcopy (on its urgent lane's thread): pages may be
     * placed again; the received bitmap (pages accounted or placed here) goes to the source, then
     * "postcopy-resume-end", then a page request for every fault still waiting.
     */
    private void resumePostcopy(Connection c, String args) {
        if (!postcopyStarted || acceptingPages) {
            throw new IllegalStateException("postcopy-recover, but this destination is not in postcopy-paused");
        }
        if (session == null || !session.equals(args)) {
            throw new IllegalStateException("postcopy-recover for migration " + args + "; this destination is receiving " + session);
        }
        current = c;
        DirtyBitmap[] held = heldAtResume;
        if (held == null) {
            held = new DirtyBitmap[regions.size()];
            for (int r = 0; r < regions.size(); r++) {
                held[r] = DirtyBitmap.allocate(regions.get(r).pageCount(), arena);
            }
        }
        for (int r = 0; r < regions.size(); r++) {
            DirtyBitmap acc = accounted[r];
            PostcopyRegion pc = postcopyRegions[r];
            DirtyBitmap h = held[r];
            for (long w = 0; w < acc.wordCount(); w++) {
                h.take(w, -1L);
                h.orWordAtomic(w, acc.word(w) | pc.placedWord(w));
            }
            Protocol.encodeBitmap(Protocol.POSTCOPY_RESUME, r, h.wordCount(), h::word, c.urgent()::sendControl);
        }
        heldAtResume = held;
        acceptingPages = true;
        c.urgent().sendControl(MemorySegment.ofArray(Protocol.POSTCOPY_RESUME_END.getBytes(StandardCharsets.UTF_8)));
        long again = 0;
        for (int r = 0; r < regions.size(); r++) {
            for (Long page : requested[r]) {
                if (!accounted[r].isDirty(page) && !postcopyRegions[r].isPlaced(page)) {
                    c.urgent().sendPageRequest(r, page, 1);
                    again++;
                }
            }
        }
        requestsAgain.addAndGet(again);
        stats.status(MigrationStats.Status.POSTCOPY_ACTIVE);
        synchronized (events) {
            resumedEvent = true;
            events.notifyAll();
        }
    }

    private void signalFinished() {
        synchronized (events) {
            finishedEvent = true;
            events.notifyAll();
        }
    }

    /** Handler of the connection of generation {@code gen}; once it is replaced, its events are ignored. */
    private MessageHandler handler(int gen) {
        return new MessageHandler() {
            private volatile Connection self;
            private volatile boolean errorReported;

            @Override
            public void onOpen(Connection connection) {
                self = connection;
                if (gen == 0) {
                    // Here, before any frame is delivered, not after accept() returns: on a loaded machine the whole
                    // migration can complete (or fail) before the accepting thread runs again, and ACTIVE set then
                    // overwrote COMPLETED, so that receive() waited for ever for an end it had missed (found by the
                    // hostile source, conformance/hostile_source.py).
                    current = connection;
                    stats.status(MigrationStats.Status.ACTIVE);
                    stats.setupDone();
                }
            }

            @Override
            public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
                DirtyBitmap[] held = heldAtResume;
                if (held != null) {
                    heldPagesResent.addAndGet(held[regionId].count(firstPage, pageCount));
                }
                accounted[regionId].markRangeAtomic(firstPage, pageCount);
                hasData[regionId].markRangeAtomic(firstPage, pageCount);
                stats.addNormal(pageCount, pageCount * regions.get(regionId).pageSize());
            }

            @Override
            public void onZeroRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
                if (postcopyStarted) {
                    // Stale data kept in the page cache (MINOR mode) is zeroed first: once accounted, a
                    // MINOR fault would map whatever is there.
                    DirtyBitmap st = stale[regionId];
                    long end = firstPage + pageCount;
                    for (long p = st.nextDirty(firstPage, end); p < end; ) {
                        long q = st.nextClean(p, end);
                        postcopyRegions[regionId].placeZero(p, q - p, x -> placed(regionId, x));
                        p = st.nextDirty(q, end);
                    }
                    // Holes read as zero once userfaultfd lets go; only a page someone faulted on needs placing now.
                    // Ordered against fault(): mark the accounting first, then read the requests.
                    accounted[regionId].markRangeAtomic(firstPage, pageCount);
                    java.util.Set<Long> asked = requested[regionId];
                    if (asked.size() < pageCount) {
                        // Walk the (few) requests rather than look every page of a long zero run up.
                        for (Long p : asked) {
                            if (p >= firstPage && p < firstPage + pageCount) {
                                postcopyRegions[regionId].placeZero(p, 1, x -> placed(regionId, x));
                            }
                        }
                    } else {
                        for (long p = firstPage; p < firstPage + pageCount; p++) {
                            if (asked.contains(p)) {
                                postcopyRegions[regionId].placeZero(p, 1, x -> placed(regionId, x));
                            }
                        }
                    }
                } else {
                    zeroWherePreviouslyWritten(regionId, firstPage, pageCount);
                    accounted[regionId].markRangeAtomic(firstPage, pageCount);
                }
                stats.addDuplicate(pageCount);
            }

            @Override
            public void onSkipRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
                accounted[regionId].markRangeAtomic(firstPage, pageCount);
                stats.addSkipped(pageCount);
            }

            @Override
            public void onRoundEnd(long round) {
                rounds.incrementAndGet();
                stats.round(0, 0);
            }

            @Override
            public void onComplete() {
                Connection c = self;
                String missing = firstMissingPage();
                if (missing != null) {
                    stats.failed(missing);
                    c.abort(missing);
                    signalFinished();
                    return;
                }
                if (postcopyRegions != null) {
                    finishPostcopy();
                    if (postcopyStartNs != 0) {
                        c.urgent().sendControl(MemorySegment.ofArray((Protocol.POSTCOPY_STATS + " " + postcopyStatsJson())
                                .getBytes(StandardCharsets.UTF_8)));
                    }
                }
                everyPageHere = true; // before the acknowledgement: the source may begin verification right after it
                c.urgent().sendComplete();
                stats.status(MigrationStats.Status.COMPLETED);
                stats.end();
                synchronized (events) {
                    events.notifyAll(); // the receive loop starts waiting for a verdict
                }
            }

            @Override
            public void onControl(LaneKind lane, MemorySegment payload) {
                String text = new String(payload.asSlice(0, Math.min(payload.byteSize(), 256)).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (text.startsWith(Protocol.POSTCOPY_DISCARD + " ")) {
                    stopPopulatingAndWait();
                    discard(payload);
                    return;
                }
                if (text.startsWith(Protocol.VERIFY_FINAL + " ")) {
                    if (postcopyStarted) {
                        throw new IllegalStateException(Protocol.VERIFY_FINAL + " during postcopy: guest RAM is registered with userfaultfd"
                                + " and cannot be read from Java");
                    }
                    verifier.finalRound(Protocol.decodeBitmap(payload, Protocol.VERIFY_FINAL, regions.size(),
                            i -> RamChecksum.chunks(regions.get(i))));
                    return;
                }
                text = new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (text.equals(Protocol.VERIFY_BEGIN)) {
                    verifier.begin(readableAfterCompletion(self));
                } else if (text.startsWith(Protocol.VERIFY_PROGRESS + " ")) {
                    verifier.sourceProgress(text.substring(Protocol.VERIFY_PROGRESS.length() + 1));
                } else if (text.startsWith(Protocol.VERIFY + " ") || text.equals(Protocol.VERIFY)) {
                    verifier.expected(text.substring(Protocol.VERIFY.length()).strip(), readableAfterCompletion(self));
                } else if (text.equals(Protocol.DONE)) {
                    signalFinished();
                } else if (text.startsWith(Protocol.SESSION + " ")) {
                    if (session != null) {
                        throw new IllegalStateException("a second session message on one migration");
                    }
                    session = text.substring(Protocol.SESSION.length() + 1);
                } else if (text.startsWith(Protocol.POSTCOPY_RECOVER + " ")) {
                    resumePostcopy(self, text.substring(Protocol.POSTCOPY_RECOVER.length() + 1));
                } else if (text.equals(Protocol.POSTCOPY_START)) {
                    if (postcopyRegions == null) {
                        throw new IllegalStateException("the source switched to postcopy, but this destination was not prepared for it"
                                + " (receive --postcopy)");
                    }
                    if (verifier.startedReading()) {
                        throw new IllegalStateException("the source switched to postcopy after announcing its final precopy round ("
                                + Protocol.VERIFY_FINAL + ")");
                    }
                    stopPopulatingAndWait(); // also when nothing was discarded
                    discardNeverReceived();
                    startPostcopy(self);
                } else if (text.startsWith(Protocol.POPULATE + " ")) {
                    if (populateMode == Populate.HINTED) {
                        hint(text.substring(Protocol.POPULATE.length() + 1));
                    }
                } else {
                    throw new IllegalArgumentException("unknown control message '" + Protocol.escape(text.split("[ \n]", 2)[0])
                            + "' on the " + lane.name().toLowerCase(java.util.Locale.ROOT) + " lane (control vocabulary "
                            + Protocol.VOCABULARY_VERSION + ", docs/wire-protocol.md)");
                }
            }

            @Override
            public void onSharedRegion(int regionId, RegionFile file) {
                // The source handed this region over (local live update): its memory becomes ours, at the
                // same addresses, and every page of it is here and current.
                GuestRegion r = regions.get(regionId);
                adopted.add(regionId);
                r.adopt(file.fd(), file.offset());
                accounted[regionId].markRangeAtomic(0, r.pageCount());
            }

            @Override
            public void onClosed(TransportException failure) {
                if (gen != generation || errorReported) {
                    return; // replaced, or onError told already
                }
                synchronized (events) {
                    if (failure == null) {
                        // The source ended the connection in order after completion: no verdict can be asked any more.
                        finishedEvent = finishedEvent || stats.status() == MigrationStats.Status.COMPLETED;
                    } else if (failure.kind() != TransportException.Kind.CLOSED && lostEvent == null && !finishedEvent) {
                        // Failed after the completion acknowledgement (the transport no longer calls onError then):
                        // over, with what we have. A CLOSED failure is this side's own close or abort.
                        lostEvent = failure;
                    }
                    events.notifyAll();
                }
            }

            @Override
            public void onError(TransportException error) {
                errorReported = true;
                if (gen != generation) {
                    return;
                }
                if (postcopyStarted) {
                    acceptingPages = false; // nothing more is placed until a connection resumes
                }
                synchronized (events) {
                    lostEvent = error;
                    events.notifyAll();
                }
            }
        };
    }

    /**
     * Verification reads guest RAM from Java: only once the migration completed and, with postcopy,
     * userfaultfd let go of it (a fault in Java code can stall the JVM at a safepoint).
     *
     * @return the connection
     * @throws IllegalStateException when the source asks before that
     */
    private Connection readableAfterCompletion(Connection c) {
        if (!everyPageHere) {
            throw new IllegalStateException("the source began verification before the migration completed here (" + stats.status().qemuName() + ")");
        }
        return c;
    }

    /** Every page is accounted for: stop the fault threads and let userfaultfd go (pages here are current, holes zero). */
    private void finishPostcopy() {
        faultsStop = true;
        for (Thread t : faultThreads) {
            try {
                t.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        finishLock.writeLock().lock();
        try {
            if (!postcopyFinished) {
                postcopyFinished = true;
                for (PostcopyRegion pc : postcopyRegions) {
                    pc.close();
                }
                requestSentNs.clear(); // requests whose page was placed before their time stamp was kept
            }
        } finally {
            finishLock.writeLock().unlock();
        }
    }

    /**
     * Lets go of userfaultfd (idempotent; nothing to do without postcopy): threads blocked on a
     * missing page are released, and pages that never arrived read as zero. For tearing down after
     * a failed postcopy: call it before joining the guest's threads (a thread blocked in a fault
     * cannot stop) and before its RAM is unmapped.
     */
    public void releaseGuestMemory() {
        if (postcopyRegions != null) {
            finishPostcopy();
        }
    }

    /** Pages that held data from an earlier round and are zero now must be zeroed here. */
    private void zeroWherePreviouslyWritten(int regionId, long firstPage, long count) {
        DirtyBitmap data = hasData[regionId];
        GuestRegion r = regions.get(regionId);
        long end = firstPage + count;
        // nextDirty / nextClean return 'end' when there is none.
        for (long p = data.nextDirty(firstPage, end); p < end; ) {
            long stop = data.nextClean(p, end);
            r.pages(p, stop - p).fill((byte) 0);
            data.clearRangeAtomic(p, stop - p);
            p = data.nextDirty(stop, end);
        }
    }

    private String firstMissingPage() {
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            long got = accounted[i].count();
            if (got != r.pageCount()) {
                long first = accounted[i].nextClean(0, r.pageCount());
                return "incomplete migration: region '" + r.name() + "' has " + (r.pageCount() - got) + " of " + r.pageCount()
                        + " pages never sent (first: page " + first + ")";
            }
        }
        return null;
    }

    @Override
    public void close() throws InterruptedException {
        verifier.close(); // no thread reads guest RAM after this
        faultsStop = true;
        releaseGuestMemory();
        stopPopulating = true;
        synchronized (hintLock) {
            hintLock.notifyAll();
        }
        if (populator != null) {
            populator.join(TimeUnit.SECONDS.toMillis(30));
        }
        arena.close();
    }
}
