package io.pagewire.ramtracker.scan;

import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.linux.Linux;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.PageMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class PageClassifierTest {
    static final long PAGE = 4096;
    static final int PAGES = 3000;
    GuestRam ram;

    record Run(RunKind kind, long first, long count) {
    }

    /** Collects runs; refuses every {@code refuseEvery}-th offer (0: never). */
    static final class Collector implements RunSink {
        final List<Run> runs = new ArrayList<>();
        final int refuseEvery;
        int offers;

        Collector(int refuseEvery) {
            this.refuseEvery = refuseEvery;
        }

        @Override
        public boolean run(RunKind kind, long firstPage, long count) {
            offers++;
            if (refuseEvery > 0 && offers % refuseEvery == 0) {
                return false;
            }
            assertTrue(count >= 1);
            runs.add(new Run(kind, firstPage, count));
            return true;
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

    /** A region with never-written, written-zero, populated and data pages; returns the expected kind of each page. */
    RunKind[] layout(GuestRegion r, BalloonMap balloon, long seed) {
        Random rnd = new Random(seed);
        RunKind[] kind = new RunKind[PAGES];
        int p = 0;
        while (p < PAGES) {
            int len = 1 + rnd.nextInt(rnd.nextBoolean() ? 3 : 150);
            int what = rnd.nextInt(4);
            for (int i = p; i < Math.min(PAGES, p + len); i++) {
                switch (what) {
                    case 0 -> kind[i] = RunKind.ZERO;                   // never touched
                    case 1 -> {                                          // written, then zeroed again
                        r.page(i).set(JAVA_BYTE, 7, (byte) 1);
                        r.page(i).set(JAVA_BYTE, 7, (byte) 0);
                        kind[i] = RunKind.ZERO;
                    }
                    case 2 -> {
                        r.populate(i, 1);                               // populated, zero
                        kind[i] = RunKind.ZERO;
                    }
                    default -> {                                         // data, somewhere in the page
                        r.page(i).set(JAVA_BYTE, rnd.nextInt((int) PAGE), (byte) (1 + rnd.nextInt(255)));
                        kind[i] = RunKind.NORMAL;
                    }
                }
            }
            p += len;
        }
        for (int k = 0; k < 6; k++) {
            int first = rnd.nextInt(PAGES - 200);
            int len = 1 + rnd.nextInt(200);
            balloon.mark(first, len);
            for (int i = first; i < first + len; i++) {
                kind[i] = RunKind.BALLOON;
            }
        }
        return kind;
    }

    GuestRegion region(Backing backing) {
        GuestRegion r = ram.open(backing == Backing.MEMFD ? RegionSpec.memfd("ram", PAGES * PAGE) : RegionSpec.anonymous("ram", PAGES * PAGE));
        assumeTrue(r.populationSource() != GuestRegion.PopulationSource.NONE, () -> "PAGEMAP_SCAN unavailable: " + PageMap.unavailabilityCause());
        return r;
    }

    /** Runs are ordered, cover [from, to) exactly, are maximal, and agree with the expected kinds. */
    static void checkCover(List<Run> runs, long from, long to, RunKind[] kind, String ctx) {
        long p = from;
        Run prev = null;
        for (Run run : runs) {
            assertEquals(p, run.first, ctx + ": runs must be contiguous: " + run);
            if (prev != null) {
                assertNotEquals(prev.kind, run.kind, ctx + ": adjacent runs of one kind must be merged: " + prev + " " + run);
            }
            for (long i = run.first; i < run.first + run.count; i++) {
                assertEquals(kind[(int) i], run.kind, ctx + ": page " + i + " in " + run);
            }
            p = run.first + run.count;
            prev = run;
        }
        assertEquals(to, p, ctx + ": runs end");
    }

    @ParameterizedTest
    @EnumSource(value = Backing.class, names = {"MEMFD", "ANONYMOUS"})
    void runsCoverTheRangeInOrderAndMatchTheContents(Backing backing) {
        GuestRegion r = region(backing);
        BalloonMap balloon = new BalloonMap(PAGES, ram.arena());
        RunKind[] kind = layout(r, balloon, 1);
        long populatedBefore = countPopulated(r);
        for (ZeroScanner z : List.of(ZeroScanner.best(), ZeroScanner.scalar(), ZeroScanner.mismatch())) {
            PageClassifier c = new PageClassifier(r, balloon, z);
            Collector all = new Collector(0);
            assertEquals(PAGES, c.classify(0, PAGES, all));
            checkCover(all.runs, 0, PAGES, kind, backing + "/" + z.name());
            // Never-populated and ballooned pages were not read.
            long ballooned = balloon.count();
            assertEquals(ballooned, c.stats().balloonPages());
            assertTrue(c.stats().pagesRead() + c.stats().unpopulatedPages() + ballooned == PAGES, c.stats().toString());
            assertTrue(c.stats().unpopulatedPages() > 0 && c.stats().normalPages() > 0 && c.stats().zeroPagesRead() > 0, c.stats().toString());
            assertEquals(all.runs.size(), c.stats().runs());
        }
        assertEquals(populatedBefore, countPopulated(r), "classification populated nothing: holes were not read");
        // Sub-ranges at odd places.
        PageClassifier c = new PageClassifier(r, balloon);
        Random rnd = new Random(3);
        for (int i = 0; i < 50; i++) {
            int from = rnd.nextInt(PAGES);
            int to = from + rnd.nextInt(PAGES - from + 1);
            Collector part = new Collector(0);
            assertEquals(to, c.classify(from, to - from, part));
            checkCover(part.runs, from, to, kind, "range [" + from + ", " + to + ")");
        }
    }

    static long countPopulated(GuestRegion r) {
        long n = 0;
        long p = 0;
        while ((p = r.nextPopulatedPage(p, r.pageCount())) < r.pageCount()) {
            long q = r.nextUnpopulatedPage(p, r.pageCount());
            n += q - p;
            p = q;
        }
        return n;
    }

    @Test
    void aRefusedRunIsResumedFromItsFirstPage() {
        GuestRegion r = region(Backing.MEMFD);
        BalloonMap balloon = new BalloonMap(PAGES, ram.arena());
        RunKind[] kind = layout(r, balloon, 2);
        PageClassifier c = new PageClassifier(r, balloon);
        Collector sink = new Collector(3);
        long p = 0;
        int calls = 0;
        while (p < PAGES) {
            p = c.classify(p, PAGES - p, sink);
            calls++;
        }
        assertTrue(calls > 5, "the sink refused runs");
        checkCover(sink.runs, 0, PAGES, kind, "resumed");
    }

    @ParameterizedTest
    @EnumSource(value = Backing.class, names = {"MEMFD", "ANONYMOUS"})
    void dirtyPagesAreTakenThenClassifiedAndRefusedOnesStayDirty(Backing backing) {
        GuestRegion r = region(backing);
        BalloonMap balloon = new BalloonMap(PAGES, ram.arena());
        RunKind[] kind = layout(r, balloon, 3);
        Random rnd = new Random(4);
        for (int refuse : new int[] {0, 2, 5}) {
            DirtyBitmap dirty = DirtyBitmap.allocate(PAGES, ram.arena());
            BitSet marked = new BitSet();
            for (int i = 0; i < PAGES; i++) {
                if (rnd.nextInt(4) == 0 || (i > 1000 && i < 1300)) {
                    dirty.mark(i);
                    marked.set(i);
                }
            }
            int from = 17;
            int to = PAGES - 33;
            PageClassifier c = new PageClassifier(r, balloon);
            Collector sink = new Collector(refuse);
            BitSet emitted = new BitSet();
            long p = from;
            while (p < to) {
                long before = sink.runs.size();
                p = c.classifyDirty(dirty, p, to - p, sink);
                for (int k = (int) before; k < sink.runs.size(); k++) {
                    Run run = sink.runs.get(k);
                    emitted.set((int) run.first, (int) (run.first + run.count));
                    for (long i = run.first; i < run.first + run.count; i++) {
                        assertEquals(kind[(int) i], run.kind, "page " + i);
                    }
                }
                // Whatever was not emitted yet is still dirty.
                BitSet expectedDirty = (BitSet) marked.clone();
                expectedDirty.andNot(emitted);
                assertEquals(expectedDirty, dirtyBits(dirty), "refuse every " + refuse + ", resumed at " + p);
            }
            BitSet expectedEmitted = marked.get(0, to);
            expectedEmitted.clear(0, from);
            assertEquals(expectedEmitted, emitted, "every dirty page of the range emitted once");
            for (int k = 1; k < sink.runs.size(); k++) {
                assertTrue(sink.runs.get(k).first >= sink.runs.get(k - 1).first + sink.runs.get(k - 1).count, "ordered");
            }
        }
    }

    static BitSet dirtyBits(DirtyBitmap d) {
        BitSet b = new BitSet();
        for (long p = d.nextDirty(0, d.pageCount()); p < d.pageCount(); p = d.nextDirty(p + 1, d.pageCount())) {
            b.set((int) p);
        }
        return b;
    }

    @Test
    void pageIndicesAboveTwoToTheThirtyTwo() {
        long pages = (1L << 32) + (1L << 16);
        GuestRegion r = ram.open(RegionSpec.anonymous("huge-guest", pages * PAGE).noReserve(true));
        assumeTrue(r.populationSource() == GuestRegion.PopulationSource.PAGE_TABLES, () -> "PAGEMAP_SCAN unavailable: " + PageMap.unavailabilityCause());
        Mappings.adviseNoHugePages(r.memory()); // "only the populated pages were read" needs page-by-page population (any THP setting)
        long base = 1L << 32;
        r.page(base + 10).set(JAVA_BYTE, 4000, (byte) 9);
        r.page(base + 11).set(JAVA_BYTE, 0, (byte) 0);
        BalloonMap balloon = new BalloonMap(pages, ram.arena()); // 512 MiB of map, mapped lazily
        balloon.mark(base + 100, 50);
        PageClassifier c = new PageClassifier(r, balloon);
        Collector sink = new Collector(0);
        assertEquals(base + 4096, c.classify(base, 4096, sink));
        assertEquals(List.of(
                new Run(RunKind.ZERO, base, 10),
                new Run(RunKind.NORMAL, base + 10, 1),
                new Run(RunKind.ZERO, base + 11, 89),
                new Run(RunKind.BALLOON, base + 100, 50),
                new Run(RunKind.ZERO, base + 150, 4096 - 150)), sink.runs);
        assertEquals(2, c.stats().pagesRead(), "only the two populated pages were read");
        DirtyBitmap dirty = DirtyBitmap.allocate(pages, ram.arena());
        dirty.markRange(base + 9, 3);
        Collector dirtySink = new Collector(0);
        assertEquals(pages, c.classifyDirty(dirty, base - 5000, pages - (base - 5000), dirtySink));
        assertEquals(List.of(new Run(RunKind.ZERO, base + 9, 1), new Run(RunKind.NORMAL, base + 10, 1), new Run(RunKind.ZERO, base + 11, 1)),
                dirtySink.runs);
    }
}
