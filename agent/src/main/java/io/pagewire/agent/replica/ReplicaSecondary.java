package io.pagewire.agent.replica;

import io.pagewire.agent.GuestControl;
import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.NativeMemory;
import io.pagewire.ramtracker.linux.Userfaultfd;
import io.pagewire.ramtracker.snapshot.WriteProtectedRam;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The secondary side of checkpoint replication ({@code pagewire receive --replica}): a RAM cache that the primary's
 * pages land in, and the secondary's own guest RAM, which holds the last complete checkpoint plus what the secondary's
 * guest wrote since.
 *
 * <ul>
 * <li><b>RAM cache</b>: one memfd per region, the transport's destination RAM: PAGE frames are placed there directly
 *     while both guests run; which pages arrived since the last checkpoint is recorded ({@code received}).</li>
 * <li><b>Secondary guest tracking</b>: the guest's regions (memfd) are under synchronous userfaultfd write-protection
 *     ({@link WriteProtectedRam}). The first write of the guest to a page after a checkpoint faults; the fault thread
 *     saves the page's checkpoint content to a backup (same offset in a sparse mapping), records the page as dirtied by
 *     the secondary and lifts the protection.</li>
 * <li><b>Complete</b>: checkpoint E is complete when its marker ({@code replica-checkpoint E R N}, urgent lane) has
 *     come, ROUND_END R has been delivered on every background stream, and exactly N pages arrived since the previous
 *     checkpoint. Only then is anything copied into the guest's RAM.</li>
 * <li><b>Apply</b>: guest paused; every page dirtied by the primary (received) or by the secondary's guest is copied
 *     from the cache through a second mapping of the guest's memfd (so the copy does not fault on the protection);
 *     pages the guest dirtied are protected again; guest resumed; {@code replica-applied} acknowledges. A page neither
 *     side touched is already equal in the cache and the guest (the seed's observation). With
 *     {@link Apply#WHOLE} every populated cache page is copied instead (the seed's problem, for comparison). With
 *     {@link Apply#LAZY} nothing is copied while the guest is paused: the pages' entries in the guest's mapping are
 *     dropped, the guest resumes, and each page is copied in on the guest's first access (userfaultfd MINOR/MISSING
 *     fault, mapped back write-protected) or by the filler on the apply thread, exactly once; {@code replica-filled}
 *     tells the primary when it may send pages again. A sweeper thread drops the entries of the next apply's pages
 *     ahead of it.</li>
 * <li><b>Failover</b>: the connection breaks (primary killed, link cut): an incomplete checkpoint is dropped (its pages
 *     are only in the cache), the guest is paused and the pages it dirtied since the last complete checkpoint are
 *     restored from the backup: the guest RAM then equals that checkpoint exactly, and the guest is left paused for the
 *     embedder to resume as the new primary. Before the first checkpoint there is nothing to take over (epoch 0):
 *     the guest RAM then holds part of the initial sync.</li>
 * </ul>
 *
 * <p>Threading: {@link #run} on one thread (the apply thread, also the lazy filler); transport callbacks on transport
 * threads; one fault thread; before the first checkpoint an initial-copy thread; with LAZY a sweeper thread. The sets
 * of dirtied pages are guarded by {@code tracking}; the guest is paused whenever they are read in bulk. LAZY page
 * states (pending, unmapped) are guarded by {@code pageLock}; the two locks are never held together in the order
 * pageLock then tracking.
 */
public final class ReplicaSecondary implements AutoCloseable {
    /** How a complete checkpoint is brought into the guest's RAM. */
    public enum Apply {
        /** Only pages dirtied by the primary since the last checkpoint or by the secondary's guest. */
        DIRTY,
        /** Every populated page of the cache (the seed's problem; for comparison). */
        WHOLE,
        /**
         * The pages of {@link #DIRTY}, not copied while the guest is paused: their page-table entries in the guest's
         * mapping are dropped (the page cache keeps them), the guest resumes, and each page is filled from the cache on
         * the guest's first access (userfaultfd MINOR/MISSING fault) or by the filler that runs after the resume,
         * whichever claims it first. The primary sends no page until the fill is done ({@code replica-filled}).
         */
        LAZY
    }

    /** How {@link #run} ended. */
    public record Result(long epoch, boolean failover, String reason) {
    }

    private final List<GuestRegion> regions;
    private final GuestControl guest;
    private final Apply apply;
    private final GuestRam cacheRam = GuestRam.create();
    private final List<GuestRegion> cache = new ArrayList<>();
    private final Arena arena = Arena.ofShared();
    private final List<MemorySegment> alias = new ArrayList<>();
    private final List<MemorySegment> backup = new ArrayList<>();
    private final List<DirtyBitmap> received = new ArrayList<>();
    private final List<DirtyBitmap> secondaryDirty = new ArrayList<>();
    /** LAZY: pages dropped from the guest's mapping at the last apply and not filled yet; guarded by pageLock. */
    private final List<DirtyBitmap> pending = new ArrayList<>();
    /**
     * LAZY: pages not mapped in the guest's mapping whose page cache holds their right content: dropped by the sweeper
     * ahead of the next apply, or filled by the filler (which does not map). A fill fault maps such a page and clears
     * its bit. Guarded by pageLock.
     */
    private final List<DirtyBitmap> unmapped = new ArrayList<>();
    /** LAZY: orders every change of a page's state (pending, filled, unmapped, mapped) between the threads. */
    private final Object pageLock = new Object();
    private Thread sweeper;
    private volatile boolean stopSweeper;
    private long fillFaultPages;   // guarded by pageLock: pages of the current fill filled on fault
    private long fillerPages;      // guarded by pageLock: ... and by the filler
    private volatile boolean filling;
    private volatile long holdFillEpoch = -1;
    private Runnable onHoldFill;
    private volatile long lastFillNs;
    private volatile long resumedNs;
    private volatile boolean primaryLost;
    private final WriteProtectedRam protection;
    private final Thread faultThread;
    private volatile boolean stopFaults;
    /** Copies the initial sync into the guest RAM while it arrives (before checkpoint 1 only; DIRTY apply only). */
    private Thread initialCopy;
    private volatile boolean stopInitialCopy;
    private final Object tracking = new Object();
    private final AtomicLong receivedPages = new AtomicLong();
    private final Object events = new Object();
    private ReplicaMessages.Checkpoint marker;  // guarded by events
    private long markerNs;                  // guarded by events: when the marker arrived
    private long roundEnded = -1;           // guarded by events
    private boolean primaryComplete;        // guarded by events
    private TransportException lost;        // guarded by events
    private String bad;                     // guarded by events
    private volatile long completeEpoch;
    private volatile long applied;
    private volatile long lastApplyNs;
    private volatile RuntimeException faultFailure;

    /**
     * @param regions the secondary guest's RAM: memfd regions, same names, sizes and page sizes as the primary's; what
     *                they hold is zeroed (the first checkpoint brings the primary's content)
     * @param guest pauses and resumes the secondary's guest (its vCPUs must write from native code: the RAM is under
     *              synchronous write-protection), or null when no guest runs here
     * @param apply how checkpoints are applied
     */
    public ReplicaSecondary(List<GuestRegion> regions, GuestControl guest, Apply apply) {
        if (regions.isEmpty()) {
            throw new IllegalArgumentException("no region to replicate into");
        }
        for (GuestRegion r : regions) {
            if (r.backing() == Backing.ANONYMOUS) {
                throw new IllegalArgumentException("region '" + r.name() + "' is anonymous memory: the secondary's guest RAM must be a memfd or file "
                        + "(checkpoints are copied in through a second mapping)");
            }
        }
        String cause = WriteProtectedRam.unavailabilityCause(regions, apply == Apply.LAZY);
        if (cause != null) {
            throw new ReplicationException("cannot track the secondary guest's writes: " + cause);
        }
        this.regions = List.copyOf(regions);
        this.guest = guest;
        this.apply = apply;
        WriteProtectedRam wp = null;
        try {
            for (GuestRegion r : regions) {
                cache.add(cacheRam.open(RegionSpec.memfd(r.name(), r.sizeBytes()).pageSize(r.pageSize())));
                alias.add(r.mapAgain(arena));
                backup.add(Mappings.mapAnonymous(r.sizeBytes(), true, arena));
                received.add(DirtyBitmap.allocate(r.pageCount(), arena));
                secondaryDirty.add(DirtyBitmap.allocate(r.pageCount(), arena));
                if (apply == Apply.LAZY) {
                    pending.add(DirtyBitmap.allocate(r.pageCount(), arena));
                    unmapped.add(DirtyBitmap.allocate(r.pageCount(), arena));
                }
            }
            wp = WriteProtectedRam.open(regions, apply == Apply.LAZY);
            wp.protectAll();
            clearStale();
        } catch (RuntimeException e) {
            if (wp != null) {
                wp.close();
            }
            cacheRam.close();
            arena.close();
            throw e;
        }
        this.protection = wp;
        this.faultThread = Thread.ofPlatform().daemon().name("replica-faults").start(this::handleFaults);
    }

    /**
     * Zeroes whatever the guest's RAM holds when replication starts (through the second mapping, after the protection
     * is on): the cache starts all zero and the primary sends only its populated pages, so a page the primary never
     * sends must read zero here too. Before the first checkpoint the guest RAM holds nothing to keep; a write of the
     * guest meanwhile is tracked, and the first checkpoint brings that page from the cache.
     */
    private void clearStale() {
        MemorySegment zeros = Mappings.mapAnonymous(ZERO_CHUNK, true, arena); // never written: reads as zeros
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            MemorySegment to = alias.get(i);
            long ps = r.pageSize();
            io.pagewire.agent.PopulatedRuns.forEach(r, (data, count) -> {
                for (long off = data * ps; off < (data + count) * ps; off += ZERO_CHUNK) {
                    NativeMemory.copy(zeros, 0, to, off, Math.min(ZERO_CHUNK, (data + count) * ps - off));
                }
            });
        }
    }

    private static final long ZERO_CHUNK = 1L << 20;

    /** @return a listener on {@code uri} whose destination RAM is the RAM cache */
    public Listener listen(String uri) {
        List<RamRegion> layout = new ArrayList<>();
        for (GuestRegion c : cache) {
            layout.add(RamRegion.of(c.name(), c.memory(), c.pageSize()));
        }
        return Transports.listen(uri, new TransportContext().layout(RamLayout.of(layout)));
    }

    /** @return the last complete (and applied) checkpoint, 0 before the first */
    public long completeEpoch() {
        return completeEpoch;
    }

    /** @return checkpoints applied */
    public long appliedCheckpoints() {
        return applied;
    }

    /** @return the last apply's copy time (ns) */
    public long lastApplyNs() {
        return lastApplyNs;
    }

    /** @return the last lazy fill's time (ns), from the guest's resume to its last page filled */
    public long lastFillNs() {
        return lastFillNs;
    }

    /** @return the CRC32C of the guest's RAM (read through the second mapping; call with the guest paused) */
    public long checksum() {
        return RamCrc.of(regions, alias);
    }

    /**
     * @return the CRC32C of the last complete checkpoint as this side holds it while its guest runs: the guest's RAM,
     *         with the pages its guest wrote since read from their saved copies (what a failover would restore). Call
     *         with the guest paused and no lazy fill in progress (e.g. from the {@code onApplied} callback of a LAZY
     *         replica, after pausing the guest).
     */
    public long checkpointChecksum() {
        synchronized (tracking) {
            if (filling) {
                throw new IllegalStateException("checkpoint " + completeEpoch + " is still being filled");
            }
            return RamCrc.of(regions, alias, secondaryDirty, backup);
        }
    }

    /**
     * Accepts one primary and follows its checkpoints until it completes (clean stop) or the connection breaks
     * (failover).
     *
     * @param listener from {@link #listen}
     * @param acceptTimeout how long to wait for the primary
     * @param onApplied called on this thread after each checkpoint is applied, with the guest still paused (may be null);
     *                  LAZY: once the checkpoint is filled, with the guest running
     * @return the last complete checkpoint and how replication ended; after a failover the guest is paused at it
     */
    public Result run(Listener listener, Duration acceptTimeout, java.util.function.LongConsumer onApplied) throws InterruptedException {
        Connection c = listener.accept(new Handler(), acceptTimeout);
        if (apply == Apply.LAZY) {
            sweeper = Thread.ofPlatform().daemon().name("replica-sweeper").start(this::sweep);
        }
        if (apply != Apply.WHOLE) {
            initialCopy = Thread.ofPlatform().daemon().name("replica-initial-copy").start(this::copyInitialSync);
        }
        try {
            while (true) {
                ReplicaMessages.Checkpoint cp = null;
                String failure = null;
                long waitNs = 0;
                synchronized (events) {
                    while (true) {
                        if (faultFailure != null) {
                            failure = "tracking the secondary guest failed: " + faultFailure.getMessage();
                            break;
                        }
                        if (bad != null) {
                            failure = bad;
                            break;
                        }
                        if (marker != null && roundEnded >= marker.round()) {
                            cp = marker;
                            marker = null;
                            waitNs = System.nanoTime() - markerNs;
                            break;
                        }
                        if (primaryComplete && marker == null) {
                            break;
                        }
                        if (lost != null) {
                            failure = "connection to the primary " + c.peer() + " lost: " + lost.getMessage();
                            break;
                        }
                        events.wait(TimeUnit.SECONDS.toMillis(1));
                    }
                }
                if (failure != null) {
                    // Outside the lock: abort joins the transport's threads, whose callbacks take it.
                    c.abort(failure);
                    return failover(failure);
                }
                if (cp == null) {
                    c.urgent().sendComplete();
                    return new Result(completeEpoch, false, "the primary ended replication");
                }
                long landed = receivedPages.getAndAdd(-cp.pages());
                if (landed != cp.pages()) {
                    String why = "checkpoint " + cp.epoch() + " counts " + cp.pages() + " pages, " + landed + " landed in the RAM cache";
                    c.abort(why);
                    receivedPages.addAndGet(cp.pages());
                    return failover(why);
                }
                long spanStart = System.nanoTime();
                endInitialCopy();
                completeEpoch = cp.epoch(); // the complete marker: from here the checkpoint is applied whatever happens to the primary
                long[] counts = applyCheckpoint();
                if (onApplied != null && apply != Apply.LAZY) {
                    onApplied.accept(cp.epoch());
                }
                if (guest != null) {
                    guest.resume();
                }
                resumedNs = System.nanoTime();
                try {
                    c.urgent().sendControl(ReplicaMessages.applied(cp.epoch(), counts[0], lastApplyNs, counts[1], counts[2], waitNs,
                            System.nanoTime() - spanStart));
                    if (apply == Apply.LAZY) {
                        long[] filled = fillAll(cp.epoch(), false);
                        if (filled == null) {
                            continue; // the primary is gone: the loop fails over, which finishes the fill
                        }
                        if (onApplied != null) {
                            onApplied.accept(cp.epoch());
                        }
                        if (counts[2] > 0) {
                            c.urgent().sendControl(ReplicaMessages.filled(cp.epoch(), filled[0], filled[1], lastFillNs));
                        }
                    }
                } catch (TransportException e) {
                    // The primary died after the checkpoint was complete: it stays applied; the next turn of the loop
                    // sees the connection lost (onClosed) and fails over from this checkpoint.
                    synchronized (events) {
                        if (lost == null) {
                            lost = e;
                        }
                    }
                }
            }
        } finally {
            endInitialCopy();
            endSweeper();
            c.close();
        }
    }

    /**
     * Before the first checkpoint the guest RAM holds no checkpoint that must be kept, so the pages of the initial sync
     * are copied into it as they land, while both guests run: the first checkpoint's apply then copies only what
     * arrived or was dirtied since, and the initial sync's pause stays near an ordinary checkpoint's. Each page's
     * received bit is taken before its copy; a page placed again afterwards is marked again and copied again by the
     * apply (the transport reports a page only once it is placed), so a copy that raced with a placement is repaired.
     */
    private void copyInitialSync() {
        long[] batch = new long[512];
        while (!stopInitialCopy) {
            boolean any = revertSecondaryWrites();
            for (int i = 0; i < regions.size() && !stopInitialCopy; i++) {
                long ps = regions.get(i).pageSize();
                MemorySegment from = cache.get(i).memory();
                MemorySegment to = alias.get(i);
                DirtyBitmap.Cursor cursor = received.get(i).cursor().reset(0, regions.get(i).pageCount(), true);
                int k;
                while (!stopInitialCopy && (k = cursor.next(batch)) > 0) {
                    any = true;
                    for (int j = 0; j < k; ) {
                        int e = j + 1;
                        while (e < k && batch[e] == batch[e - 1] + 1) {
                            e++;
                        }
                        populateForCopy(to, batch[j] * ps, (e - j) * ps);
                        NativeMemory.copy(from, batch[j] * ps, to, batch[j] * ps, (e - j) * ps);
                        j = e;
                    }
                }
            }
            if (!any) {
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
            }
        }
    }

    /**
     * Before the first checkpoint, also undoes the secondary guest's own writes while it runs, so that the first apply
     * finds only those of the last moments (not every page the guest wrote during the whole initial sync): each page
     * it wrote is protected again, then given the cache's content, and forgotten. A write after the protection faults
     * and marks the page again (the fault handler waits for the tracking lock held here until the copy is done).
     *
     * @return whether any page was reverted
     */
    private boolean revertSecondaryWrites() {
        boolean any = false;
        for (int i = 0; i < regions.size() && !stopInitialCopy; i++) {
            GuestRegion r = regions.get(i);
            long ps = r.pageSize();
            DirtyBitmap sd = secondaryDirty.get(i);
            long p = 0;
            while (!stopInitialCopy) {
                synchronized (tracking) {
                    int done = 0;
                    p = sd.nextDirty(p, r.pageCount());
                    while (p < r.pageCount() && done < REVERT_BATCH) {
                        long end = Math.min(sd.nextClean(p, r.pageCount()), p + REVERT_BATCH - done);
                        protection.protect(i, p, end - p);
                        NativeMemory.copy(cache.get(i).memory(), p * ps, alias.get(i), p * ps, (end - p) * ps);
                        sd.clearRange(p, end - p);
                        done += (int) (end - p);
                        p = sd.nextDirty(end, r.pageCount());
                    }
                    if (done == 0) {
                        break;
                    }
                    any = true;
                }
            }
            if (any) {
                synchronized (tracking) {
                    // Before the first checkpoint nothing is restored from the backup: free what the guest's writes saved.
                    Mappings.dontNeed(backup.get(i));
                }
            }
        }
        return any;
    }

    /** Pages reverted per hold of the tracking lock (a writing vCPU waits at most that long). */
    private static final int REVERT_BATCH = 64;

    private void endInitialCopy() throws InterruptedException {
        Thread t = initialCopy;
        if (t != null) {
            stopInitialCopy = true;
            t.join();
            initialCopy = null;
        }
    }

    /** Brings the guest to the complete checkpoint; leaves it paused. @return {copied pages, pages the guest dirtied} */
    private long[] applyCheckpoint() {
        if (guest != null) {
            guest.pause();
        }
        long t0 = System.nanoTime();
        long copied = 0;
        long guestDirty = 0;
        long lazy = 0;
        synchronized (tracking) {
            for (int i = 0; i < regions.size(); i++) {
                DirtyBitmap rx = received.get(i);
                DirtyBitmap sd = secondaryDirty.get(i);
                guestDirty += sd.count();
                if (apply == Apply.LAZY) {
                    lazy += dropForFill(i, rx, sd);
                    if (sd.count() > 0) {
                        Mappings.dontNeed(backup.get(i)); // the dropped pages are filled write-protected: no re-protect
                    }
                    rx.clearAll();
                    sd.clearAll();
                    continue;
                }
                if (apply == Apply.WHOLE) {
                    copied += copyPopulated(i);
                    copied += copyRuns(i, sd); // pages the guest wrote where the cache has a hole
                } else {
                    for (long w = 0; w < sd.wordCount(); w++) {
                        long bits = sd.word(w);
                        if (bits != 0) {
                            rx.orWordAtomic(w, bits);
                        }
                    }
                    copied += copyRuns(i, rx);
                }
                reprotect(i, sd);
                rx.clearAll();
                sd.clearAll();
            }
        }
        lastApplyNs = System.nanoTime() - t0;
        applied++;
        filling = lazy > 0;
        return new long[] {copied, guestDirty, lazy};
    }

    /**
     * LAZY apply of one region, guest paused: the pages received or dirtied by the guest become pending, and their
     * page-table entries in the guest's mapping are dropped (batched {@code MADV_DONTNEED}; the page cache keeps the
     * pages, so the guest's next access raises a fill fault), except those already dropped (by the sweeper or the
     * last fill) and not mapped again since. @return pages pending
     */
    private long dropForFill(int region, DirtyBitmap rx, DirtyBitmap sd) {
        DirtyBitmap pend = pending.get(region);
        DirtyBitmap z = unmapped.get(region);
        GuestRegion r = regions.get(region);
        Drops drops = new Drops(r.memory().address(), r.pageSize(), ZAP_BATCH);
        synchronized (pageLock) {
            filling = true; // the sweeper stops (it looks under pageLock) until the fill is done
            fillFaultPages = 0; // the counts are per fill (the guest is paused: no fault in flight)
            fillerPages = 0;
            for (long w = 0; w < rx.wordCount(); w++) {
                long bits = rx.word(w) | sd.word(w);
                if (bits != 0) {
                    pend.orWordAtomic(w, bits);
                    drops.addWord(w, bits & ~z.take(w, bits)); // pending pages are unmapped: not tracked as 'unmapped'
                }
            }
            drops.flush();
        }
        return pend.count();
    }

    /** Ranges of pages of one region to drop from the guest's mapping, merged when adjacent, dropped a batch at a time. */
    private static final class Drops {
        private final long base;
        private final long pageSize;
        private final long[] addresses;
        private final long[] lengths;
        private int n;

        Drops(long base, long pageSize, int batch) {
            this.base = base;
            this.pageSize = pageSize;
            this.addresses = new long[batch];
            this.lengths = new long[batch];
        }

        /** Adds the pages of bitmap word {@code w} set in {@code bits}. */
        void addWord(long w, long bits) {
            while (bits != 0) {
                long address = base + ((w << 6) + Long.numberOfTrailingZeros(bits)) * pageSize;
                bits &= bits - 1;
                if (n > 0 && addresses[n - 1] + lengths[n - 1] == address) {
                    lengths[n - 1] += pageSize;
                    continue;
                }
                if (n == addresses.length) {
                    flush();
                }
                addresses[n] = address;
                lengths[n] = pageSize;
                n++;
            }
        }

        /** @return ranges waiting */
        int size() {
            return n;
        }

        void flush() {
            if (n > 0) {
                Mappings.dontNeedRanges(addresses, lengths, n);
                n = 0;
            }
        }
    }

    private static final int ZAP_BATCH = 1024;
    /** Pages the filler copies per hold of the page lock (a faulting vCPU waits at most that). */
    private static final int FILL_RUN = 64;

    /**
     * LAZY: fills every pending page by a copy from the cache through the second mapping, racing with the fault thread
     * page by page under the page lock: each page is copied exactly once, and a page is mapped only once copied (by a
     * fault; the filler leaves the pages it copied unmapped, no system call per page: the guest's next access maps
     * them). Runs on the apply thread with the guest running; when the primary is lost it stops and leaves the rest to
     * the failover, which calls it again to finish. @return {pages filled on fault, pages filled by this filler}, or
     * null when it stopped early
     */
    private long[] fillAll(long epoch, boolean failingOver) throws InterruptedException {
        if (apply != Apply.LAZY) {
            return new long[] {0, 0};
        }
        long t0 = System.nanoTime();
        boolean held = false;
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            DirtyBitmap pend = pending.get(i);
            DirtyBitmap z = unmapped.get(i);
            long ps = r.pageSize();
            long pages = r.pageCount();
            long from = 0;
            while (true) {
                synchronized (pageLock) {
                    long p = pend.nextDirty(from, pages);
                    if (p >= pages) {
                        break;
                    }
                    long end = Math.min(pend.nextClean(p, pages), p + FILL_RUN);
                    NativeMemory.copy(cache.get(i).memory(), p * ps, alias.get(i), p * ps, (end - p) * ps);
                    pend.clearRange(p, end - p);
                    z.markRange(p, end - p);
                    fillerPages += end - p;
                    from = end;
                }
                if (!held && epoch == holdFillEpoch && filling) {
                    held = true;
                    holdFillEpoch = -1;
                    holdFill();
                }
                if (!failingOver && primaryLost) {
                    return null; // the failover finishes the fill
                }
            }
        }
        lastFillNs = System.nanoTime() - Math.min(t0, resumedNs);
        synchronized (pageLock) {
            filling = false;
            return new long[] {fillFaultPages, fillerPages};
        }
    }

    /** Test hook: inside a fill, wait until the connection to the primary is lost (the guest keeps running and faulting). */
    private void holdFill() throws InterruptedException {
        Runnable hook = onHoldFill;
        if (hook != null) {
            hook.run();
        }
        synchronized (events) {
            while (lost == null && bad == null && faultFailure == null) {
                events.wait(TimeUnit.SECONDS.toMillis(1));
            }
        }
    }

    /**
     * Test hook (LAZY): the filler of checkpoint {@code epoch} stops after its first run of pages and waits, the guest
     * running, until the connection to the primary is lost; {@code onHold} is called when it stops.
     */
    public void holdFill(long epoch, Runnable onHold) {
        this.onHoldFill = onHold;
        this.holdFillEpoch = epoch;
    }

    /**
     * A fill fault (LAZY), on the fault thread: fills the page if it is pending, then maps it write-protected (so that
     * the guest's write, if it was one, faults again and is tracked).
     */
    private void fillOnFault(int region, long page, boolean missing) {
        long ps = regions.get(region).pageSize();
        synchronized (pageLock) {
            DirtyBitmap pend = pending.get(region);
            if (pend.isDirty(page)) {
                NativeMemory.copy(cache.get(region).memory(), page * ps, alias.get(region), page * ps, ps);
                pend.clearRange(page, 1);
                fillFaultPages++;
            } else if (missing) {
                // A page never populated and not part of a checkpoint: zero, as before; put it in the page cache.
                Mappings.populateWrite(alias.get(region).asSlice(page * ps, ps));
            }
            protection.fill(region, page, 1);
            unmapped.get(region).clearRange(page, 1);
        }
    }

    /**
     * LAZY, between checkpoints (not during a fill): drops the guest-mapping entries of the pages the next apply will
     * drop anyway (received since the last checkpoint, or dirtied by the secondary's guest), a batch at a time, so the
     * apply, while the guest is paused, drops only those that came since the last sweep or that a fault mapped again.
     * A dropped page keeps its content in the page cache; the guest's next access maps it again through a fill fault.
     */
    private void sweep() {
        while (!stopSweeper) {
            LockSupport.parkNanos(SWEEP_INTERVAL_NS);
            if (filling || completeEpoch == 0) {
                continue; // before checkpoint 1 the initial copy handles the guest's writes
            }
            for (int i = 0; i < regions.size() && !stopSweeper; i++) {
                GuestRegion r = regions.get(i);
                DirtyBitmap rx = received.get(i);
                DirtyBitmap sd = secondaryDirty.get(i);
                DirtyBitmap z = unmapped.get(i);
                Drops drops = new Drops(r.memory().address(), r.pageSize(), SWEEP_BATCH);
                long w = 0;
                while (w < rx.wordCount() && !stopSweeper) {
                    synchronized (pageLock) {
                        if (filling) {
                            break;
                        }
                        for (; w < rx.wordCount() && drops.size() < SWEEP_BATCH - 64; w++) {
                            // Racy read of sd (its writer holds 'tracking'): a bit missed here is dropped by the apply.
                            long bits = (rx.word(w) | sd.word(w)) & ~z.word(w);
                            if (bits != 0) {
                                z.orWordAtomic(w, bits);
                                drops.addWord(w, bits);
                            }
                        }
                        drops.flush();
                    }
                }
            }
        }
    }

    private static final int SWEEP_BATCH = 256;
    private static final long SWEEP_INTERVAL_NS = TimeUnit.MILLISECONDS.toNanos(2);

    private void endSweeper() throws InterruptedException {
        Thread t = sweeper;
        if (t != null) {
            stopSweeper = true;
            t.join();
            sweeper = null;
        }
    }

    private long copyRuns(int region, DirtyBitmap pages) {
        GuestRegion r = regions.get(region);
        long n = r.pageCount();
        long ps = r.pageSize();
        long[] copied = {0};
        forEachRun(pages, n, (p, count) -> {
            populateForCopy(alias.get(region), p * ps, count * ps);
            NativeMemory.copy(cache.get(region).memory(), p * ps, alias.get(region), p * ps, count * ps);
            copied[0] += count;
        });
        return copied[0];
    }

    private long copyPopulated(int region) {
        GuestRegion c = cache.get(region);
        long ps = c.pageSize();
        long[] copied = {0};
        io.pagewire.agent.PopulatedRuns.forEach(c, (data, count) -> {
            populateForCopy(alias.get(region), data * ps, count * ps);
            NativeMemory.copy(c.memory(), data * ps, alias.get(region), data * ps, count * ps);
            copied[0] += count;
        });
        return copied[0];
    }

    /**
     * Populates a long run of the second mapping in one call before it is copied into: the first checkpoint brings
     * the whole initial sync into fresh memory, where a fault per page costs several times the copy (DESIGN.md,
     * machine facts). Short runs (the usual dirty pages) are left to the copy: their pages are mapped already.
     */
    private static void populateForCopy(MemorySegment view, long offset, long bytes) {
        if (bytes >= POPULATE_MIN_BYTES) {
            Mappings.populateWrite(view.asSlice(offset, bytes));
        }
    }

    private static final long POPULATE_MIN_BYTES = 256 * 1024;

    /**
     * Protects again the pages the guest dirtied and frees their backup copies. The backup holds exactly the pages
     * dirtied since the last checkpoint (earlier ones were freed at earlier applies), so one {@code MADV_DONTNEED} over
     * the whole backup frees them: the kernel walks only the page tables present, and one TLB flush serves all.
     */
    private void reprotect(int region, DirtyBitmap sd) {
        if (sd.count() == 0) {
            return;
        }
        forEachRun(sd, regions.get(region).pageCount(), (p, count) -> protection.protect(region, p, count));
        Mappings.dontNeed(backup.get(region));
    }

    /** What to do with one run of marked pages. */
    @FunctionalInterface
    private interface RunAction {
        void run(long firstPage, long count);
    }

    /** Calls {@code action} for each run of marked pages of {@code pages} in {@code [0, pageCount)}, in order. */
    private static void forEachRun(DirtyBitmap pages, long pageCount, RunAction action) {
        long p = pages.nextDirty(0, pageCount);
        while (p < pageCount) {
            long end = pages.nextClean(p, pageCount);
            action.run(p, end - p);
            p = pages.nextDirty(end, pageCount);
        }
    }

    private Result failover(String reason) throws InterruptedException {
        endInitialCopy();
        endSweeper();
        // A lazy fill in progress is finished first: the guest RAM then holds the checkpoint.
        fillAll(completeEpoch, true);
        if (guest != null) {
            guest.pause();
        }
        synchronized (tracking) {
            for (int i = 0; i < regions.size(); i++) {
                GuestRegion r = regions.get(i);
                DirtyBitmap sd = secondaryDirty.get(i);
                long ps = r.pageSize();
                MemorySegment from = backup.get(i);
                MemorySegment to = alias.get(i);
                forEachRun(sd, r.pageCount(), (p, count) -> NativeMemory.copy(from, p * ps, to, p * ps, count * ps));
                sd.clearAll();
            }
        }
        stopTracking();
        return new Result(completeEpoch, true, reason);
    }

    private void handleFaults() {
        MemorySegment buf = Arena.ofAuto().allocate(Userfaultfd.MSG_SIZE * 64L, 8);
        try {
            while (!stopFaults) {
                protection.readFaults(buf, 100, this::saveBeforeWrite, this::fillOnFault);
            }
        } catch (RuntimeException e) {
            faultFailure = e;
            synchronized (events) {
                events.notifyAll();
            }
            protection.close(); // wake every blocked writer: tracking is over
        }
    }

    /** A write fault: save the page's checkpoint content to the backup, then let the write through. */
    private void saveBeforeWrite(int region, long page, int tid) {
        long ps = regions.get(region).pageSize();
        synchronized (tracking) {
            DirtyBitmap sd = secondaryDirty.get(region);
            if (!sd.isDirty(page)) {
                // Save the checkpoint's content before the guest's first write lands (through the second mapping:
                // reading the protected mapping would be fine, but this is the same page). A LAZY page is filled before
                // it is mapped, so the saved content is the checkpoint's.
                NativeMemory.copy(alias.get(region), page * ps, backup.get(region), page * ps, ps);
                sd.mark(page);
            }
            // Under the lock: the initial copy's revert (guest running) must not see the mark before the unprotect.
            protection.unprotect(region, page, 1);
        }
    }

    private void stopTracking() {
        stopFaults = true;
        try {
            faultThread.join(TimeUnit.SECONDS.toMillis(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        protection.close();
    }

    private void badMessage(String why) {
        synchronized (events) {
            if (bad == null) {
                bad = why;
            }
            events.notifyAll();
        }
    }

    /** Records what arrives; the apply thread acts on it. */
    private final class Handler implements MessageHandler {
        @Override
        public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
            if (filling) {
                badMessage("pages (region " + regionId + ", " + firstPage + "+" + pageCount + ") arrived while checkpoint " + completeEpoch
                        + " is being filled lazily: the primary must wait for replica-filled");
            }
            received.get(regionId).markRangeAtomic(firstPage, pageCount);
            receivedPages.addAndGet(pageCount);
        }

        @Override
        public void onZeroRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
            badMessage("a ZERO_RUN (region " + regionId + ", pages " + firstPage + "+" + pageCount + ") in replication: the primary sends pages only");
        }

        @Override
        public void onSkipRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
            badMessage("a SKIP_RUN (region " + regionId + ", pages " + firstPage + "+" + pageCount + ") in replication: the primary sends pages only");
        }

        @Override
        public void onRoundEnd(long round) {
            synchronized (events) {
                roundEnded = round;
                events.notifyAll();
            }
        }

        @Override
        public void onControl(LaneKind lane, MemorySegment payload) {
            try {
                String text = ReplicaMessages.decode(payload);
                if (!ReplicaMessages.type(text).equals(ReplicaMessages.CHECKPOINT)) {
                    throw new IllegalArgumentException("unknown replication message '" + PeerText.escape(text) + "' (expected "
                            + ReplicaMessages.CHECKPOINT + ")");
                }
                ReplicaMessages.Checkpoint cp = ReplicaMessages.parseCheckpoint(text);
                synchronized (events) {
                    long expected = completeEpoch + 1;
                    if (marker != null || cp.epoch() != expected) {
                        throw new IllegalArgumentException("checkpoint " + cp.epoch() + " out of order: expected " + expected
                                + (marker != null ? " after " + marker.epoch() + " is applied" : ""));
                    }
                    marker = cp;
                    markerNs = System.nanoTime();
                    events.notifyAll();
                }
            } catch (IllegalArgumentException e) {
                badMessage("bad replication message from the primary: " + e.getMessage());
            }
        }

        @Override
        public void onComplete() {
            synchronized (events) {
                primaryComplete = true;
                events.notifyAll();
            }
        }

        @Override
        public void onClosed(TransportException failure) {
            primaryLost = true;
            synchronized (events) {
                if (lost == null) {
                    lost = failure != null ? failure : new TransportException(TransportException.Kind.CLOSED, "closed by the primary");
                }
                events.notifyAll();
            }
        }
    }

    /** Stops tracking (lifting all protection), frees the cache and backup. Idempotent. */
    @Override
    public void close() {
        try {
            stopTracking();
        } finally {
            cacheRam.close();
            arena.close();
        }
    }
}
