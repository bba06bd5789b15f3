package io.pagewire.agent.snapshot;

import io.pagewire.agent.GuestControl;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.linux.NativeMemory;
import io.pagewire.ramtracker.linux.Userfaultfd;
import io.pagewire.ramtracker.scan.BalloonMap;
import io.pagewire.ramtracker.scan.ZeroScanner;
import io.pagewire.ramtracker.snapshot.WriteProtectedRam;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A live, point-in-time snapshot of guest RAM while the vCPUs keep writing (seed 003, done the postcopy way).
 *
 * <h2>How</h2>
 * <ol>
 * <li>Start instant: the guest is paused, the populated pages are noted, every page is write-protected with
 *     userfaultfd in synchronous mode ({@link WriteProtectedRam}), the guest resumes. The image is RAM as it was
 *     at this instant.</li>
 * <li>Fault thread: a vCPU that writes a page not yet saved stops in the kernel; the thread claims the page (an
 *     atomic bit), copies it into a slot of the copy pool, lifts the protection (waking the vCPU) and queues the
 *     copy as urgent. The vCPU waits for one 4 KiB memory copy and two system calls, not for the storage, unless
 *     the pool is full: then it waits for a slot (bounded memory).</li>
 * <li>Background pass: walks every region in page order; pages not populated at the start instant and ballooned
 *     pages are claimed and unprotected without being read or written (they are zero in the image); runs of up to
 *     {@link SnapshotConfig#chunkPages()} populated pages are claimed, copied into a chunk buffer, unprotected, and
 *     queued as background.</li>
 * <li>Writers: take copies from the queues as the {@link FaultLatencyPolicy} says, skip zero pages, and give the
 *     rest to the {@link SnapshotSink}. When the pass is done and every copy written, the protection is removed
 *     and the sink finishes (a file writes its completion marker last).</li>
 * </ol>
 *
 * <h2>Embedding</h2>
 * <pre>{@code
 * try (SnapshotFileWriter file = SnapshotFileWriter.create(path, regions, StorageOptions.NONE);
 *      SnapshotEngine snap = SnapshotEngine.start(regions, Map.of(), guestControl, file, new SnapshotConfig(), null)) {
 *     snap.await();                     // throws SnapshotException if it failed
 *     System.out.println(snap.stats().summary());
 * }
 * }</pre>
 * The guest must write its RAM from outside the JVM's Java code (KVM vCPUs, or native code), and must not discard
 * pages (balloon inflation) while the snapshot runs.
 */
public final class SnapshotEngine implements AutoCloseable {

    /** Called at the start instant: the guest is paused and its RAM protected. */
    @FunctionalInterface
    public interface StartListener {
        /** Runs with the guest paused; the image will equal RAM as it is now. */
        void atStartInstant();
    }

    /** One copy buffer and what it holds: a fault slot (one page) or a background chunk. */
    private static final class SaveItem {
        final MemorySegment buffer;
        final boolean faultSlot;
        int region;
        long firstPage;
        int count;
        /** bit i: page firstPage + i was copied to buffer offset i * pageSize. */
        long mask;
        long faultStartNs;
        /** A background chunk a writer took (counted in backgroundWriting); guarded by the engine's lock. */
        boolean writing;

        SaveItem(MemorySegment buffer, boolean faultSlot) {
            this.buffer = buffer;
            this.faultSlot = faultSlot;
        }
    }

    private final List<GuestRegion> regions;
    private final Map<String, BalloonMap> balloons;
    private final SnapshotSink sink;
    private final SnapshotConfig config;
    private final FaultLatencyPolicy policy;
    private final boolean copyBeforeWrite;
    private final WriteProtectedRam protection;
    private final Arena arena = Arena.ofShared();
    private final DirtyBitmap[] claimed;
    private final DirtyBitmap[] populated;
    /** Pages saved from a fault copy (for tests and statistics). */
    private final DirtyBitmap[] faulted;
    private final SnapshotStats stats = new SnapshotStats();
    private final ZeroScanner zero = ZeroScanner.best();
    private final Recorder recentFaults = new Recorder(TimeUnit.SECONDS.toNanos(60), 2);

    // The queues and pools, guarded by lock.
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition work = lock.newCondition();
    private final Condition faultSlotFree = lock.newCondition();
    private final Condition backgroundFree = lock.newCondition();
    private final Condition idle = lock.newCondition();
    private final ArrayDeque<SaveItem> freeFaultSlots;
    private final ArrayDeque<SaveItem> freeBackground;
    private final int faultSlotCount;
    private final ArrayDeque<SaveItem> urgentQueue;
    /** Background chunks; for a policy without priority, faulted copies too, in arrival order. */
    private final ArrayDeque<SaveItem> fifoQueue;
    private int backgroundInFlight;
    /** Background chunks being written now. */
    private int backgroundWriting;
    private boolean writersMayExit;
    private volatile boolean failed;
    private Histogram recycled;
    private long window;
    private long lastAdaptNs;
    /** Faulted pages written so far and the count the seed throttle waits for. */
    private final AtomicLong urgentWritten = new AtomicLong();
    private volatile long seedUntil;

    private final List<Thread> threads = new ArrayList<>();
    private Thread faultThread;
    private volatile boolean stopFaults;
    private final CountDownLatch done = new CountDownLatch(1);
    private volatile Throwable failure;
    private long startEpochNs;

    private SnapshotEngine(List<GuestRegion> regions, Map<String, BalloonMap> balloons, SnapshotSink sink, SnapshotConfig config) {
        this.regions = List.copyOf(regions);
        this.balloons = Map.copyOf(balloons);
        this.sink = sink;
        this.config = config;
        this.policy = config.policy();
        this.copyBeforeWrite = config.copyBeforeWrite();
        long slot = 0;
        for (GuestRegion r : regions) {
            slot = Math.max(slot, r.pageSize());
        }
        config.conclude(slot);
        this.claimed = new DirtyBitmap[regions.size()];
        this.populated = new DirtyBitmap[regions.size()];
        this.faulted = new DirtyBitmap[regions.size()];
        for (int i = 0; i < regions.size(); i++) {
            claimed[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            populated[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            faulted[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
        }
        this.faultSlotCount = (int) Math.max(1, config.poolBytes() / slot);
        MemorySegment pool = arena.allocate(faultSlotCount * slot, 4096);
        this.freeFaultSlots = new ArrayDeque<>(faultSlotCount);
        for (int i = 0; i < faultSlotCount; i++) {
            freeFaultSlots.add(new SaveItem(pool.asSlice(i * slot, slot), true));
        }
        long chunkBytes = slot * config.chunkPages();
        MemorySegment chunks = arena.allocate(chunkBytes * config.backgroundBuffers(), 4096);
        this.freeBackground = new ArrayDeque<>(config.backgroundBuffers());
        for (int i = 0; i < config.backgroundBuffers(); i++) {
            freeBackground.add(new SaveItem(chunks.asSlice(i * chunkBytes, chunkBytes), false));
        }
        this.urgentQueue = new ArrayDeque<>(faultSlotCount);
        this.fifoQueue = new ArrayDeque<>(faultSlotCount + config.backgroundBuffers());
        this.window = config.backgroundBuffers();
        this.protection = WriteProtectedRam.open(regions);
    }

    /**
     * @param regions the regions to snapshot
     * @return null when a live snapshot works here, else what is missing (naming the kernel feature)
     */
    public static String unavailabilityCause(List<GuestRegion> regions) {
        if (!Userfaultfd.isAvailable()) {
            return Userfaultfd.unavailabilityCause();
        }
        return WriteProtectedRam.unavailabilityCause(regions);
    }

    /**
     * Takes the start instant (pausing the guest briefly) and starts saving.
     *
     * @param regions the regions to snapshot (region index = position)
     * @param balloons balloon maps by region name (pages known free, never saved); may be empty
     * @param guest pauses and resumes the vCPUs around the start instant
     * @param sink where the pages go; finished by the engine, closed by the caller
     * @param config settings
     * @param listener called at the start instant, or null
     * @return the running snapshot
     */
    public static SnapshotEngine start(List<GuestRegion> regions, Map<String, BalloonMap> balloons, GuestControl guest, SnapshotSink sink,
            SnapshotConfig config, StartListener listener) {
        SnapshotEngine e = new SnapshotEngine(regions, balloons, sink, config);
        try {
            e.begin(guest, listener);
        } catch (RuntimeException | Error ex) {
            e.close();
            throw ex;
        }
        return e;
    }

    private void begin(GuestControl guest, StartListener listener) {
        stats.startNs = System.nanoTime();
        guest.pause();
        try {
            for (int i = 0; i < regions.size(); i++) {
                if (regions.get(i).populationSource() != GuestRegion.PopulationSource.FILE_HOLES) {
                    // Page tables: read in the pause, before write-protection adds its markers to the holes.
                    notePopulated(regions.get(i), populated[i]);
                }
            }
            stats.populationNs = System.nanoTime() - stats.startNs;
            protection.protectAll();
            java.time.Instant now = java.time.Instant.now();
            startEpochNs = now.getEpochSecond() * 1_000_000_000L + now.getNano();
            if (listener != null) {
                listener.atStartInstant();
            }
        } finally {
            guest.resume();
        }
        stats.setupNs = System.nanoTime() - stats.startNs;
        faultThread = Thread.ofPlatform().daemon().name("snapshot-faults").unstarted(this::faultLoop);
        faultThread.setPriority(Thread.MAX_PRIORITY);
        faultThread.start();
        for (int i = 0; i < config.writerThreads(); i++) {
            threads.add(Thread.ofPlatform().daemon().name("snapshot-writer-" + i).start(this::writerLoop));
        }
        threads.add(Thread.ofPlatform().daemon().name("snapshot-background").start(this::backgroundAndFinish));
    }

    private static void notePopulated(GuestRegion r, DirtyBitmap out) {
        io.pagewire.agent.PopulatedRuns.forEach(r, out::markRange);
    }

    /** @return the counters */
    public SnapshotStats stats() {
        return stats;
    }

    /** @return the start instant, ns since the epoch */
    public long startEpochNs() {
        return startEpochNs;
    }

    /**
     * @param region region index
     * @param page page
     * @return whether the page was saved from a fault copy (a vCPU wrote it before the background pass reached
     *         it) rather than by the background pass; valid after {@link #await()}, before {@link #close()}
     */
    public boolean savedByFault(int region, long page) {
        return faulted[region].isDirty(page);
    }

    /**
     * Waits for the snapshot to finish.
     *
     * @throws SnapshotException when it failed (the target is then incomplete)
     */
    public void await() throws InterruptedException {
        done.await();
        check();
    }

    /**
     * @return true when finished within the time (then failures throw)
     */
    public boolean await(long timeout, TimeUnit unit) throws InterruptedException {
        if (!done.await(timeout, unit)) {
            return false;
        }
        check();
        return true;
    }

    private void check() {
        Throwable f = failure;
        if (f != null) {
            throw new SnapshotException("snapshot failed: " + f.getMessage(), f);
        }
    }

    // ------------------------------------------------------------------ claiming

    /** Receives the runs of pages a claim obtained. */
    @FunctionalInterface
    private interface RunSink {
        void run(long first, long count);
    }

    /**
     * Claims the pages of {@code [from, to)} not yet claimed, atomically a word at a time; reports the runs
     * obtained in order.
     */
    private static void claimRange(DirtyBitmap bits, long from, long to, RunSink out) {
        long runStart = -1;
        long p = from;
        while (p < to) {
            long word = p >>> 6;
            int lo = (int) (p & 63);
            int hi = (int) Math.min(64, to - (word << 6));
            long mask = (hi == 64 ? -1L : (1L << hi) - 1) & (-1L << lo);
            long got = mask & ~bits.orWordAtomic(word, mask);
            for (int b = lo; b < hi; b++) {
                long page = (word << 6) + b;
                if ((got & (1L << b)) != 0) {
                    if (runStart < 0) {
                        runStart = page;
                    }
                } else if (runStart >= 0) {
                    out.run(runStart, page - runStart);
                    runStart = -1;
                }
            }
            p = (word << 6) + hi;
        }
        if (runStart >= 0) {
            out.run(runStart, to - runStart);
        }
    }

    // ------------------------------------------------------------------ fault thread

    private long batchNs;

    private void faultLoop() {
        MemorySegment events = arena.allocate((long) Userfaultfd.MSG_SIZE * 64, 8);
        try {
            while (!stopFaults && !failed) {
                batchNs = 0;
                protection.readFaults(events, 10, this::onFault);
            }
        } catch (Throwable t) {
            fail(t);
        }
    }

    private void onFault(int region, long page, int threadId) {
        if (batchNs == 0) {
            batchNs = System.nanoTime();
        }
        DirtyBitmap bits = claimed[region];
        long bit = 1L << (page & 63);
        if ((bits.orWordAtomic(page >>> 6, bit) & bit) != 0) {
            // Claimed already: its saver lifts the protection and wakes this writer (or did so already).
            stats.faultsAlreadySaved.incrementAndGet();
            return;
        }
        faulted[region].markAtomic(page);
        SaveItem it = acquireFaultSlot();
        if (it == null) {
            return; // failed: closing lifts every protection
        }
        GuestRegion r = regions.get(region);
        long size = r.pageSize();
        NativeMemory.copy(r.memory(), page << r.pageShift(), it.buffer, 0, size);
        it.region = region;
        it.firstPage = page;
        it.count = 1;
        it.mask = 1;
        it.faultStartNs = batchNs;
        stats.faultPages.incrementAndGet();
        if (copyBeforeWrite) {
            protection.unprotect(region, page, 1);
            recordFault(System.nanoTime() - batchNs);
        }
        enqueue(it);
    }

    private void recordFault(long ns) {
        stats.faultLatency.recordValue(Math.min(ns, TimeUnit.SECONDS.toNanos(60)));
        recentFaults.recordValue(Math.min(ns, TimeUnit.SECONDS.toNanos(60)));
        if (policy == FaultLatencyPolicy.SEED && ns > config.seedThresholdNs()) {
            // The seed's rule: the next N pages saved are faulted ones only.
            seedUntil = urgentWritten.get() + config.seedPages();
            stats.seedThrottles.incrementAndGet();
        }
    }

    private SaveItem acquireFaultSlot() {
        lock.lock();
        try {
            if (freeFaultSlots.isEmpty()) {
                stats.poolWaits.incrementAndGet();
                while (freeFaultSlots.isEmpty() && !failed) {
                    faultSlotFree.awaitUninterruptibly();
                }
            }
            if (failed) {
                return null;
            }
            SaveItem it = freeFaultSlots.poll();
            long inUse = faultSlotCount - freeFaultSlots.size();
            if (inUse > stats.poolHighWater.get()) {
                stats.poolHighWater.set(inUse);
            }
            return it;
        } finally {
            lock.unlock();
        }
    }

    private void enqueue(SaveItem it) {
        lock.lock();
        try {
            if (it.faultSlot && policy.prioritised()) {
                urgentQueue.add(it);
            } else {
                fifoQueue.add(it);
            }
            work.signal();
        } finally {
            lock.unlock();
        }
    }

    // ------------------------------------------------------------------ background pass

    private void backgroundAndFinish() {
        try {
            for (int i = 0; i < regions.size() && !failed; i++) {
                backgroundPass(i);
            }
            stats.passEndNs = System.nanoTime();
            // Every page is claimed now; wait until every copy is written.
            lock.lock();
            try {
                while (!failed && (freeFaultSlots.size() < faultSlotCount || freeBackground.size() < config.backgroundBuffers())) {
                    idle.awaitUninterruptibly();
                }
                writersMayExit = true;
                work.signalAll();
            } finally {
                lock.unlock();
            }
            stopFaults = true;
            faultThread.join();
            for (Thread t : threads) {
                if (t != Thread.currentThread()) {
                    t.join();
                }
            }
            if (!failed) {
                stats.drainEndNs = System.nanoTime();
                sink.finish(new SnapshotSink.SnapshotSummary(stats.dataPages(), stats.zeroPages(), startEpochNs));
                stats.endNs = System.nanoTime(); // the image is complete
                // Clean-up after completion, off the total: every page was unprotected when it was claimed and saved,
                // so nothing can fault any more; unregistering walks the page tables once more (0.1-1 s for 2 GiB here).
                protection.unregisterAll();
                stats.releasedNs = System.nanoTime();
            }
        } catch (Throwable t) {
            fail(t);
        } finally {
            if (failed) {
                try {
                    protection.close(); // never leave a vCPU stopped on a protected page
                } catch (RuntimeException e) {
                    failure.addSuppressed(e);
                }
            }
            done.countDown();
        }
    }

    private void backgroundPass(int ri) {
        GuestRegion r = regions.get(ri);
        DirtyBitmap pop = populated[ri];
        if (r.populationSource() == GuestRegion.PopulationSource.FILE_HOLES) {
            // The file's holes are read here, after the guest resumed, not in the pause (one lseek pair per run of
            // data). Still exact: a page that was a hole at the start instant and is data now was written since,
            // and that write faulted and claimed the page before it could populate it, so the pass skips it; a
            // hole now was a hole then (the guest discards nothing during a snapshot).
            notePopulated(r, pop);
        }
        DirtyBitmap bits = claimed[ri];
        BalloonMap balloon = balloons.get(r.name());
        long end = r.pageCount();
        int shift = r.pageShift();
        long p = 0;
        while (p < end && !failed) {
            boolean skip = !pop.isDirty(p) || balloon != null && balloon.isBallooned(p);
            if (skip) {
                // Pages zero at the start instant: never read, never written; claimed and unprotected a run at a time.
                long q = p;
                while (q < end) {
                    if (!pop.isDirty(q)) {
                        q = pop.nextDirty(q, end);
                    } else if (balloon != null && balloon.isBallooned(q)) {
                        q = balloon.nextNotBallooned(q, end);
                    } else {
                        break;
                    }
                }
                claimRange(bits, p, q, (first, count) -> {
                    stats.zeroPages.addAndGet(count);
                    protection.unprotect(ri, first, count);
                });
                p = q;
                continue;
            }
            long e = Math.min(end, p + config.chunkPages());
            e = Math.min(e, pop.nextClean(p, e));
            if (balloon != null) {
                e = Math.min(e, balloon.nextBallooned(p, e));
            }
            SaveItem it = acquireBackground();
            if (it == null) {
                return;
            }
            long first = p;
            it.region = ri;
            it.firstPage = first;
            it.count = (int) (e - first);
            it.mask = 0;
            claimRange(bits, first, e, (from, count) -> {
                NativeMemory.copy(r.memory(), from << shift, it.buffer, (from - first) << shift, count << shift);
                if (copyBeforeWrite) {
                    protection.unprotect(ri, from, count);
                }
                int lo = (int) (from - first);
                it.mask |= (count == 64 ? -1L : (1L << count) - 1) << lo;
            });
            stats.backgroundPages.addAndGet(Long.bitCount(it.mask));
            if (it.mask == 0) {
                release(it);
            } else {
                enqueue(it);
            }
            p = e;
        }
    }

    private SaveItem acquireBackground() {
        lock.lock();
        try {
            while (!failed) {
                if (freeBackground.isEmpty()) {
                    backgroundFree.awaitUninterruptibly();
                    continue;
                }
                if (policy == FaultLatencyPolicy.SEED && urgentWritten.get() < seedUntil && freeFaultSlots.size() < faultSlotCount) {
                    // Throttled: only faulted pages are served while any wait.
                    backgroundFree.await(1, TimeUnit.MILLISECONDS);
                    continue;
                }
                if (policy == FaultLatencyPolicy.ADAPTIVE) {
                    adapt();
                    if (backgroundInFlight >= window) {
                        backgroundFree.await(1, TimeUnit.MILLISECONDS);
                        continue;
                    }
                }
                backgroundInFlight++;
                return freeBackground.poll();
            }
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SnapshotException("background pass interrupted", e);
        } finally {
            lock.unlock();
        }
    }

    /** The adaptive policy's floor: background chunks it always lets be written at once (half the writers, at least one). */
    private int backgroundFloor() {
        return Math.max(1, config.writerThreads() / 2);
    }

    /** The adaptive policy, at most once a millisecond, under the lock. */
    private void adapt() {
        long now = System.nanoTime();
        if (now - lastAdaptNs < 1_000_000) {
            return;
        }
        lastAdaptNs = now;
        recycled = recentFaults.getIntervalHistogram(recycled);
        double occupancy = 1.0 - (double) freeFaultSlots.size() / faultSlotCount;
        boolean slow = recycled.getTotalCount() > 0 && recycled.getValueAtPercentile(99) > config.targetP99Ns();
        if (slow || occupancy > 0.75) {
            // Never below half the writers: the pass keeps at least that share of the storage, so the snapshot ends
            // (and pages stop faulting) even when the storage cannot keep up with the faults.
            window = Math.max(backgroundFloor(), window / 2);
            if (window < stats.adaptiveMinWindow.get()) {
                stats.adaptiveMinWindow.set(window);
            }
        } else if (occupancy < 0.5 && window < config.backgroundBuffers()) {
            window++;
        }
    }

    // ------------------------------------------------------------------ writers

    private void writerLoop() {
        try {
            SaveItem it;
            while ((it = take()) != null) {
                write(it);
                release(it);
            }
        } catch (Throwable t) {
            fail(t);
        }
    }

    private SaveItem take() {
        lock.lock();
        try {
            while (!failed) {
                SaveItem it;
                if (policy == FaultLatencyPolicy.ADAPTIVE
                        && (freeFaultSlots.size() > faultSlotCount / 2 || backgroundWriting < backgroundFloor())) {
                    // The pool has room, so no vCPU waits for a faulted copy to be written: a background chunk first
                    // saves up to chunkPages pages in one write, and every page it saves can no longer fault. Fuller,
                    // the pass still keeps its floor of writers.
                    it = fifoQueue.isEmpty() ? urgentQueue.poll() : fifoQueue.poll();
                } else {
                    it = policy.prioritised() && !urgentQueue.isEmpty() ? urgentQueue.poll() : fifoQueue.poll();
                }
                if (it != null) {
                    if (!it.faultSlot) {
                        it.writing = true;
                        backgroundWriting++;
                    }
                    return it;
                }
                if (writersMayExit) {
                    return null;
                }
                work.awaitUninterruptibly();
            }
            return null;
        } finally {
            lock.unlock();
        }
    }

    private void write(SaveItem it) {
        GuestRegion r = regions.get(it.region);
        long size = r.pageSize();
        long runStart = -1;
        for (int i = 0; i <= it.count; i++) {
            boolean data = i < it.count && (it.mask & (1L << i)) != 0 && !zero.isZero(it.buffer, i * size, size);
            if (i < it.count && (it.mask & (1L << i)) != 0 && !data) {
                stats.zeroPages.incrementAndGet();
            }
            if (data && runStart < 0) {
                runStart = i;
            } else if (!data && runStart >= 0) {
                int n = (int) (i - runStart);
                sink.pages(it.region, it.firstPage + runStart, n, it.buffer.asSlice(runStart * size, n * size), it.faultSlot);
                stats.dataPages.addAndGet(n);
                runStart = -1;
            }
        }
        if (!copyBeforeWrite) {
            // QEMU's way: the writer was held until its page reached the target.
            for (int i = 0; i < it.count; i++) {
                if ((it.mask & (1L << i)) != 0) {
                    protection.unprotect(it.region, it.firstPage + i, 1);
                }
            }
            if (it.faultSlot) {
                recordFault(System.nanoTime() - it.faultStartNs);
            }
        }
    }

    private void release(SaveItem it) {
        lock.lock();
        try {
            if (it.faultSlot) {
                freeFaultSlots.add(it);
                urgentWritten.incrementAndGet();
                faultSlotFree.signal();
            } else {
                backgroundInFlight--;
                if (it.writing) {
                    it.writing = false;
                    backgroundWriting--;
                }
                freeBackground.add(it);
            }
            backgroundFree.signal();
            if (freeFaultSlots.size() == faultSlotCount && freeBackground.size() == config.backgroundBuffers()) {
                idle.signalAll();
            }
        } finally {
            lock.unlock();
        }
    }

    private void fail(Throwable t) {
        lock.lock();
        try {
            if (failure == null) {
                failure = t;
                stats.error = String.valueOf(t.getMessage());
            }
            failed = true;
            work.signalAll();
            faultSlotFree.signalAll();
            backgroundFree.signalAll();
            idle.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Stops a running snapshot (the target stays incomplete), lifts every protection, frees the pool. Idempotent. */
    @Override
    public void close() {
        if (done.getCount() > 0 && faultThread != null) {
            fail(new SnapshotException("snapshot cancelled"));
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try {
            protection.close();
        } finally {
            if (faultThread != null) {
                try {
                    faultThread.join();
                    for (Thread t : threads) {
                        t.join();
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            arena.close();
        }
    }
}
