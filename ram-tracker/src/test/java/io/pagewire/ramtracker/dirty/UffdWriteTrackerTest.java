package io.pagewire.ramtracker.dirty;

import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.linux.Linux;
import io.pagewire.ramtracker.linux.NativeMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** userfaultfd async write-protect + PAGEMAP_SCAN on real memory, with real writer threads. */
class UffdWriteTrackerTest {
    static final long PAGE = 4096;
    GuestRam ram;

    /** The backings, plus anonymous memory with transparent huge pages. */
    enum Kind {
        MEMFD(Backing.MEMFD, false), ANONYMOUS(Backing.ANONYMOUS, false), ANONYMOUS_THP(Backing.ANONYMOUS, true);

        final Backing backing;
        final boolean thp;

        Kind(Backing backing, boolean thp) {
            this.backing = backing;
            this.thp = thp;
        }
    }

    @BeforeEach
    void open() {
        assumeTrue(Linux.isAvailable(), () -> "native layer unavailable: " + Linux.unavailabilityCause());
        ram = GuestRam.create();
    }

    @AfterEach
    void close() {
        if (ram != null) {
            ram.close();
        }
    }

    GuestRegion region(Kind kind, long pages) {
        assumeTrue(UffdWriteTracker.isAvailable(kind.backing),
                () -> "userfaultfd write tracking unavailable for " + kind.backing + ": " + UffdWriteTracker.unavailabilityCause(kind.backing));
        RegionSpec spec = kind.backing == Backing.MEMFD ? RegionSpec.memfd("ram", pages * PAGE) : RegionSpec.anonymous("ram", pages * PAGE);
        return ram.open(spec.hugePages(kind.thp));
    }

    /** A guest write, from native code: the region is userfaultfd-registered (see NativeMemory). */
    static void write(GuestRegion r, long page) {
        MemorySegment p = r.page(page);
        NativeMemory.setByte(p, 100, (byte) (NativeMemory.getByte(p, 100) + 1));
    }

    static BitSet dirtyPages(DirtyBitmap d) {
        BitSet b = new BitSet();
        for (long p = d.nextDirty(0, d.pageCount()); p < d.pageCount(); p = d.nextDirty(p + 1, d.pageCount())) {
            b.set(Math.toIntExact(p));
        }
        return b;
    }

    static BitSet bits(int... pages) {
        BitSet b = new BitSet();
        Arrays.stream(pages).forEach(b::set);
        return b;
    }

    @ParameterizedTest
    @EnumSource(value = Kind.class, names = {"MEMFD", "ANONYMOUS"})
    void reportsExactlyTheWrittenPagesOncePerWrite(Kind kind) {
        GuestRegion r = region(kind, 4096);
        r.populate(2048, 1024); // half of these populated before tracking, the rest never touched
        write(r, 7);            // written before start: not reported
        try (UffdWriteTracker t = UffdWriteTracker.open(r)) {
            assertFalse(t.isTracking());
            assertThrows(IllegalStateException.class, () -> t.collect(DirtyBitmap.allocate(4096, ram.arena())));
            t.start();
            assertTrue(t.isTracking());
            DirtyBitmap d = DirtyBitmap.allocate(4096, ram.arena());
            assertEquals(0, t.collect(d));
            for (int p : new int[] {3, 64, 65, 1000, 2048, 3071, 4095}) {
                write(r, p);
            }
            assertEquals(7, t.collect(d));
            assertEquals(bits(3, 64, 65, 1000, 2048, 3071, 4095), dirtyPages(d));
            DirtyBitmap again = DirtyBitmap.allocate(4096, ram.arena());
            assertEquals(0, t.collect(again), "collect re-protected what it reported");
            write(r, 3);
            write(r, 2000);
            write(r, 3000);
            // In chunks: each chunk reports only its own pages.
            DirtyBitmap chunked = DirtyBitmap.allocate(4096, ram.arena());
            assertEquals(2, t.collect(chunked, 0, 2048));
            assertEquals(bits(3, 2000), dirtyPages(chunked));
            assertEquals(1, t.collect(chunked, 2048, 2048));
            assertEquals(bits(3, 2000, 3000), dirtyPages(chunked));
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> t.collect(chunked, 4000, 97));
            assertTrue(e.getMessage().contains("outside the tracked [0, +4096)"), e.getMessage());
            t.stop();
            assertFalse(t.isTracking());
            write(r, 5);            // not tracked
            t.start();
            DirtyBitmap afterRestart = DirtyBitmap.allocate(4096, ram.arena());
            assertEquals(0, t.collect(afterRestart), "a write between stop and start is not reported");
            write(r, 6);
            assertEquals(1, t.collect(afterRestart));
            assertEquals(bits(6), dirtyPages(afterRestart));
        }
        write(r, 9); // after close the memory is writable and untracked
    }

    @Test
    void aSubrangeAboveTwoToTheThirtyTwoPagesReportsRegionPageIndices() {
        assumeTrue(UffdWriteTracker.isAvailable(Backing.ANONYMOUS), () -> UffdWriteTracker.unavailabilityCause(Backing.ANONYMOUS));
        long pages = (1L << 32) + (1L << 16);
        GuestRegion r = ram.open(RegionSpec.anonymous("huge-guest", pages * PAGE).noReserve(true));
        long first = 1L << 32;
        try (UffdWriteTracker t = UffdWriteTracker.open(r, first, 4096)) {
            t.start();
            NativeMemory.setByte(r.page(first + 5), 0, (byte) 1);
            NativeMemory.setByte(r.page(first + 4000), 0, (byte) 1);
            DirtyBitmap d = DirtyBitmap.allocate(pages, ram.arena()); // 512 MiB of bitmap, mapped lazily
            assertEquals(2, t.collect(d));
            assertTrue(d.isDirty(first + 5) && d.isDirty(first + 4000));
            assertEquals(2, d.count(first - 64, 4096 + 128));
            assertEquals(first + 5, d.nextDirty(0, pages), "nothing reported below the tracked range");
        }
    }

    /**
     * Writer threads write each page of the writable part exactly once, concurrently with a
     * collector that collects in a loop. A writer reads the count of collects started before and
     * after its write (c1, c2): the write completed before collect c2 started, and collect c1 - 1
     * may have been running during it. So the page must be reported by a collect in
     * [c1 - 1, c2] - "by that collect or the next" - never before c1 - 1 and never after c2, and
     * untouched pages never. (A page can be reported twice for one store: the store faults, the
     * kernel lifts the protection, a collect reports and re-protects the page before the store
     * retires, the store faults again. Reported early and again: never lost.)
     */
    @ParameterizedTest
    @EnumSource(Kind.class)
    void concurrentWritesAreReportedByTheRunningCollectOrTheNextNeverLost(Kind kind) throws Exception {
        int pages = 16384;
        int writable = 12288;
        GuestRegion r = region(kind, pages);
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < writable; i++) {
            order.add(i);
        }
        Collections.shuffle(order, new Random(42));
        int[] c1 = new int[pages];
        int[] c2 = new int[pages];
        int[] firstReport = new int[pages];
        int[] lastReport = new int[pages];
        int[] reports = new int[pages];
        List<BitSet> reportedBy = new ArrayList<>();
        Arrays.fill(firstReport, -1);
        AtomicInteger next = new AtomicInteger();
        AtomicInteger collectsStarted = new AtomicInteger();
        AtomicInteger writersDone = new AtomicInteger();
        int writers = 2;
        try (UffdWriteTracker t = UffdWriteTracker.open(r); ExecutorService pool = Executors.newFixedThreadPool(writers)) {
            t.start();
            List<Future<?>> futures = new ArrayList<>();
            for (int w = 0; w < writers; w++) {
                futures.add(pool.submit(() -> {
                    int i;
                    while ((i = next.getAndIncrement()) < writable) {
                        // At each quarter of the writes, wait until the collector has started another
                        // collect: at least four collects overlap the writes however fast this machine is.
                        int quarter = i / (writable / 4);
                        while (collectsStarted.get() < quarter + 1 && !Thread.currentThread().isInterrupted()) {
                            Thread.onSpinWait();
                        }
                        int p = order.get(i);
                        c1[p] = collectsStarted.get();
                        write(r, p);
                        c2[p] = collectsStarted.get();
                    }
                    writersDone.incrementAndGet();
                }));
            }
            DirtyBitmap d = DirtyBitmap.allocate(pages, ram.arena());
            long[] out = new long[1024];
            DirtyBitmap.Cursor cursor = d.cursor();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            int collect = 0;
            boolean finalCollect = false;
            while (!finalCollect) {
                finalCollect = writersDone.get() == writers; // read before the collect: one full collect after all writes
                assertTrue(System.nanoTime() < deadline, "writers did not finish within 60 s");
                collectsStarted.set(collect + 1);            // collect number `collect` starts now
                t.collect(d);
                cursor.reset(0, pages, true);
                BitSet reported = new BitSet(pages);
                reportedBy.add(reported);
                int n;
                while ((n = cursor.next(out)) > 0) {
                    for (int k = 0; k < n; k++) {
                        int p = (int) out[k];
                        if (firstReport[p] < 0) {
                            firstReport[p] = collect;
                        }
                        lastReport[p] = collect;
                        reports[p]++;
                        reported.set(p);
                    }
                }
                collect++;
            }
            for (Future<?> f : futures) {
                f.get(10, TimeUnit.SECONDS);
            }
            assertTrue(collect >= 4, "the writers waited for four collects, but only " + collect + " ran");
        }
        for (int p = 0; p < pages; p++) {
            if (p >= writable) {
                if (!kind.thp) {
                    assertEquals(0, reports[p], "page " + p + " was never written but reported");
                }
                continue;
            }
            String ctx = kind + " page " + p + " written between collects started " + c1[p] + " and " + c2[p] + ", reported by collects "
                    + firstReport[p] + ".." + lastReport[p] + " (" + reports[p] + " reports)";
            boolean inWindow = false;
            for (int k = Math.max(0, c1[p] - 1); k <= c2[p] && k < reportedBy.size(); k++) {
                inWindow |= reportedBy.get(k).get(p);
            }
            assertTrue(inWindow, ctx + ": not reported by the collect running during the write or the next one");
            if (kind.thp) {
                // A write reports its whole huge page: neighbours' writes report a page outside its own window.
                continue;
            }
            assertTrue(firstReport[p] >= c1[p] - 1, ctx + ": reported before it was written");
            assertTrue(lastReport[p] <= c2[p], ctx + ": reported again after the write was reported");
        }
    }

    /**
     * Anonymous memory learns population from the page tables, where the markers userfaultfd puts on never-populated
     * pages read as swapped: while tracked, those pages must still count as never populated (read as zeros, never
     * read by the classifier), and every page that may hold data (populated before, written since, re-protected by a
     * collect) as populated.
     */
    @Test
    void neverWrittenAnonymousPagesStayUnpopulatedWhileTracked() {
        GuestRegion r = region(Kind.ANONYMOUS, 4096);
        io.pagewire.ramtracker.linux.Mappings.adviseNoHugePages(r.memory()); // population is checked page by page
        r.populate(1024, 16); // populated before tracking
        write(r, 100);        // data before tracking
        try (UffdWriteTracker t = UffdWriteTracker.open(r)) {
            t.start();
            assertEquals(100, r.nextPopulatedPage(0, 4096));
            assertEquals(101, r.nextUnpopulatedPage(100, 4096));
            assertEquals(1024, r.nextPopulatedPage(101, 4096));
            assertEquals(1040, r.nextUnpopulatedPage(1024, 4096));
            assertEquals(4096, r.nextPopulatedPage(1040, 4096), "never-written pages under markers are not populated");
            NativeMemory.getByte(r.page(2000), 0); // a read maps the shared zero page: still no data
            assertEquals(4096, r.nextPopulatedPage(1040, 4096));
            write(r, 3000); // written while tracked: data at once
            assertEquals(3000, r.nextPopulatedPage(1040, 4096));
            assertEquals(3001, r.nextUnpopulatedPage(3000, 4096));
            try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
                DirtyBitmap d = DirtyBitmap.allocate(r.pageCount(), arena);
                t.collect(d);
                assertEquals(bits(3000), dirtyPages(d));
            }
            assertEquals(3000, r.nextPopulatedPage(1040, 4096), "protected again by the collect, still data");
            io.pagewire.ramtracker.scan.PageClassifier c = new io.pagewire.ramtracker.scan.PageClassifier(r, null);
            assertEquals(4096, c.classify(0, 4096, (kind, first, count) -> true));
            assertEquals(1 + 16 + 1, c.stats().pagesRead(), "only the pages that may hold data are read");
        }
        assertEquals(100, r.nextPopulatedPage(0, 4096), "untracked: the page tables alone again");
    }

    @Test
    void unavailableFeaturesAreNamed() {
        String cause = UffdWriteTracker.unavailabilityCause(Backing.MEMFD);
        assumeTrue(cause == null, () -> "tracking unavailable here: " + cause);
        assertTrue(UffdWriteTracker.isAvailable(Backing.ANONYMOUS));
        GuestRegion r = ram.open(RegionSpec.memfd("x", 16 * PAGE));
        try (UffdWriteTracker t = UffdWriteTracker.open(r)) {
            assertTrue(t.description().startsWith("userfaultfd async write-protect of region 'x'"), t.description());
            t.start();
            assertThrows(IllegalStateException.class, t::start);
        }
    }
}
