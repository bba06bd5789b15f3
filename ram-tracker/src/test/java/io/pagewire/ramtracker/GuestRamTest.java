package io.pagewire.ramtracker;

import io.pagewire.ramtracker.linux.Linux;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.PageMap;
import io.pagewire.ramtracker.scan.PageClassifier;
import io.pagewire.ramtracker.scan.RunKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class GuestRamTest {
    static final long PAGE = 4096;
    GuestRam ram;

    @BeforeAll
    static void linux() {
        assumeTrue(Linux.isAvailable(), () -> "native layer unavailable: " + Linux.unavailabilityCause());
    }

    @BeforeEach
    void open() {
        ram = GuestRam.create();
    }

    @AfterEach
    void close() {
        ram.close();
    }

    /** One region of each backing; FILE lives on /dev/shm (tmpfs). */
    GuestRegion open(Backing backing, String name, long bytes) throws Exception {
        return switch (backing) {
            case MEMFD -> ram.open(RegionSpec.memfd(name, bytes));
            case ANONYMOUS -> ram.open(RegionSpec.anonymous(name, bytes));
            case FILE -> {
                Path dir = Path.of("/dev/shm");
                assumeTrue(Files.isDirectory(dir) && Files.isWritable(dir), "/dev/shm (tmpfs) is not available for file-backed regions");
                Path p = Files.createTempFile(dir, "pagewire-test-", ".ram");
                p.toFile().deleteOnExit();
                yield ram.open(RegionSpec.file(name, p, bytes));
            }
        };
    }

    @ParameterizedTest
    @EnumSource(Backing.class)
    void regionsArePagedSegmentsWithBoundsNamingTheRegion(Backing backing) throws Exception {
        GuestRegion r = open(backing, "pc.ram", 256 * PAGE);
        assertEquals("pc.ram", r.name());
        assertEquals(backing, r.backing());
        assertEquals(PAGE, r.pageSize());
        assertEquals(12, r.pageShift());
        assertEquals(256, r.pageCount());
        assertEquals(256 * PAGE, r.sizeBytes());
        r.page(255).set(JAVA_LONG, 0, 99L);
        assertEquals(99L, r.memory().get(JAVA_LONG, 255 * PAGE));
        IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> r.pages(250, 7));
        assertEquals("region 'pc.ram': pages [250, +7) outside [0, 256)", e.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> r.page(-1));
        assertEquals(backing != Backing.ANONYMOUS, r.file().isPresent());
        assertEquals(backing == Backing.ANONYMOUS
                ? (PageMap.isAvailable() ? GuestRegion.PopulationSource.PAGE_TABLES : GuestRegion.PopulationSource.NONE)
                : GuestRegion.PopulationSource.FILE_HOLES, r.populationSource());
    }

    /**
     * Exact page-by-page population. Anonymous memory is kept off transparent huge pages here
     * ({@code MADV_NOHUGEPAGE}): with THP a 4 KiB write may populate a whole 2 MiB page, which
     * {@link #transparentHugePagesOnlyCostReadsNeverData} covers.
     */
    @ParameterizedTest
    @EnumSource(Backing.class)
    void populationIsKnownWithoutReadingAndDiscardUndoesIt(Backing backing) throws Exception {
        GuestRegion r = open(backing, "ram", 512 * PAGE);
        assumeTrue(r.populationSource() != GuestRegion.PopulationSource.NONE, () -> "PAGEMAP_SCAN unavailable: " + PageMap.unavailabilityCause());
        if (backing == Backing.ANONYMOUS) {
            Mappings.adviseNoHugePages(r.memory());
        }
        assertEquals(512, r.nextPopulatedPage(0, 512));
        assertEquals(0, r.nextUnpopulatedPage(0, 512));
        r.page(100).set(JAVA_BYTE, 17, (byte) 5);
        r.populate(300, 20);
        assertEquals(100, r.nextPopulatedPage(0, 512));
        assertEquals(101, r.nextUnpopulatedPage(100, 512));
        assertEquals(300, r.nextPopulatedPage(101, 512));
        assertEquals(320, r.nextUnpopulatedPage(300, 512));
        assertEquals(310, r.nextUnpopulatedPage(300, 310), "bounded by toPage");
        assertEquals(512, r.nextPopulatedPage(320, 512));
        r.discard(100, 1);
        r.discard(300, 20);
        assertEquals(512, r.nextPopulatedPage(0, 512));
        assertEquals(0, r.page(100).get(JAVA_BYTE, 17));
        // What reading a discarded page does to the bookkeeping is the kernel's choice: anonymous
        // memory usually maps the shared zero page (still unpopulated), but a kernel may allocate;
        // a hole of a memfd or tmpfs file is allocated (why the classifier never reads holes).
        // Guaranteed either way: only page 100 can have become populated, and it reads as zero.
        long populated = r.nextPopulatedPage(0, 512);
        assertTrue(populated == 100 || populated == 512, "only the page read may become populated, got " + populated);
        if (backing != Backing.ANONYMOUS) {
            assertEquals(100, populated, "reading a file hole allocates a page");
        }
        assertEquals(populated == 100 ? 512 : 100, populated == 100 ? r.nextPopulatedPage(101, 512) : r.nextUnpopulatedPage(100, 512));
        List<Run> runs = new ArrayList<>();
        PageClassifier.Stats stats = classify(r, runs);
        assertEquals(List.of(new Run(RunKind.ZERO, 0, 512)), runs, "all zero, read or not");
        assertEquals(populated == 100 ? 1 : 0, stats.pagesRead(), "only a page the kernel reports populated is read");
    }

    /**
     * On any THP setting (always, madvise, never; mTHP sizes too), forced on here where the kernel
     * allows it: a 4 KiB write may populate a whole huge page, and a discard of part of it leaves
     * the rest populated with zeros. The kernel guarantees only that written pages are populated
     * and that every page reads what was written or zero; the classifier's promise holds on top of
     * that: a page reported unpopulated is a zero run unread, a page reported populated is read
     * and, found zero, a zero run. Never lost data; only more reading.
     */
    @Test
    void transparentHugePagesOnlyCostReadsNeverData() {
        long pages = 2048; // 8 MiB: at least three whole 2 MiB pages whatever the alignment
        GuestRegion r = ram.open(RegionSpec.anonymous("thp", pages * PAGE).hugePages(true));
        assumeTrue(r.populationSource() == GuestRegion.PopulationSource.PAGE_TABLES, () -> "PAGEMAP_SCAN unavailable: " + PageMap.unavailabilityCause());
        r.page(1000).set(JAVA_BYTE, 9, (byte) 7);
        r.page(1300).set(JAVA_BYTE, 9, (byte) 7);
        r.discard(1300, 1);
        assertTrue(r.nextPopulatedPage(0, pages) <= 1000, "a written page is populated");
        assertEquals(1001, r.nextUnpopulatedPage(1000, 1001), "page 1000 is populated");
        List<Run> runs = new ArrayList<>();
        PageClassifier.Stats stats = classify(r, runs);
        assertEquals(List.of(new Run(RunKind.ZERO, 0, 1000), new Run(RunKind.NORMAL, 1000, 1), new Run(RunKind.ZERO, 1001, pages - 1001)),
                runs, "the same runs on every THP setting");
        // How many pages are read is the kernel's: khugepaged may collapse (populate) or a deferred
        // split may free zero-filled parts while this runs. At least the written page, never more than all.
        assertTrue(stats.pagesRead() >= 1 && stats.pagesRead() <= pages, "pages read: " + stats.pagesRead());
    }

    record Run(RunKind kind, long first, long count) {
    }

    /** Classifies the whole region into {@code runs}; returns the classifier's statistics. */
    static PageClassifier.Stats classify(GuestRegion r, List<Run> runs) {
        PageClassifier c = new PageClassifier(r, null);
        assertEquals(r.pageCount(), c.classify(0, r.pageCount(), (kind, first, count) -> runs.add(new Run(kind, first, count))));
        return c.stats();
    }

    @Test
    void aSecondMappingOfAMemfdSharesThePages() {
        GuestRegion r = ram.open(RegionSpec.memfd("ram", 16 * PAGE));
        MemorySegment again = r.mapAgain(ram.arena());
        again.set(JAVA_LONG, 3 * PAGE, 1234L);
        assertEquals(1234L, r.page(3).get(JAVA_LONG, 0));
        GuestRegion anon = ram.open(RegionSpec.anonymous("anon", 16 * PAGE));
        RamTrackerException e = assertThrows(RamTrackerException.class, () -> anon.mapAgain(ram.arena()));
        assertTrue(e.getMessage().contains("open it as a memfd"), e.getMessage());
    }

    @Test
    void regionsAreNamedUniquelyAndListedInOrder() {
        GuestRegion a = ram.open(RegionSpec.memfd("a", 4 * PAGE));
        GuestRegion b = ram.open(RegionSpec.anonymous("b", 8 * PAGE));
        assertEquals(0, a.index());
        assertEquals(1, b.index());
        assertEquals(java.util.List.of(a, b), ram.regions());
        assertEquals(b, ram.region("b").orElseThrow());
        assertFalse(ram.region("c").isPresent());
        assertEquals(12 * PAGE, ram.totalBytes());
        IllegalArgumentException dup = assertThrows(IllegalArgumentException.class, () -> ram.open(RegionSpec.memfd("a", PAGE)));
        assertTrue(dup.getMessage().contains("'a' is already open"), dup.getMessage());
    }

    @Test
    void specsAreValidatedWithTheBadValueNamed() {
        assertEquals("region 'x': size must be positive, got 0 bytes",
                assertThrows(IllegalArgumentException.class, () -> RegionSpec.memfd("x", 0).conclude()).getMessage());
        assertEquals("region 'x': page size must be a power of two, got 3000",
                assertThrows(IllegalArgumentException.class, () -> RegionSpec.memfd("x", 4096).pageSize(3000).conclude()).getMessage());
        assertEquals("region 'x': size 5000 is not a multiple of the page size 4096",
                assertThrows(IllegalArgumentException.class, () -> ram.open(RegionSpec.anonymous("x", 5000))).getMessage());
        assertThrows(IllegalArgumentException.class, () -> RegionSpec.memfd("x", PAGE).noReserve(true).conclude());
        assertThrows(IllegalArgumentException.class, () -> RegionSpec.memfd("a/b", PAGE).conclude());
        GuestRegion big = ram.open(RegionSpec.memfd("eight-k", 8 * 8192).pageSize(8192));
        assertEquals(8, big.pageCount());
        assertEquals(13, big.pageShift());
    }

    @Test
    void hugetlbMemfdUsesTwoMibPagesWhenReserved() throws Exception {
        long reserved = Long.parseLong(Files.readString(Path.of("/proc/sys/vm/nr_hugepages")).trim());
        assumeTrue(reserved >= 2, "no 2 MiB huge pages reserved (sysctl vm.nr_hugepages=" + reserved + "): hugetlbfs regions cannot be mapped");
        GuestRegion r = ram.open(RegionSpec.memfd("huge", 4L << 20).hugePages(true));
        assertEquals(2L << 20, r.pageSize());
        assertEquals(2, r.pageCount());
        r.page(1).set(JAVA_LONG, 0, 5L);
        assertEquals(5L, r.memory().get(JAVA_LONG, 2L << 20));
    }

    @Test
    void hugetlbWithoutReservedPagesFailsWithAdvice() throws Exception {
        long reserved = Long.parseLong(Files.readString(Path.of("/proc/sys/vm/nr_hugepages")).trim());
        assumeTrue(reserved == 0, "huge pages are reserved here; the failure path cannot be shown");
        RamTrackerException e = assertThrows(RamTrackerException.class, () -> ram.open(RegionSpec.memfd("huge", 4L << 20).hugePages(true)));
        assertTrue(e.getMessage().contains("vm.nr_hugepages"), e.getMessage());
        assertTrue(ram.region("huge").isEmpty());
    }

    @Test
    void pageIndicesAboveTwoToTheThirtyTwoWork() {
        // 2^32 + 2^20 pages of 4 KiB = 16 TiB of address space, reserved nowhere: only touched pages cost memory.
        long pages = (1L << 32) + (1L << 20);
        GuestRegion r = ram.open(RegionSpec.anonymous("huge-guest", pages * PAGE).noReserve(true));
        Mappings.adviseNoHugePages(r.memory()); // exact page-by-page population on any THP setting
        assertEquals(pages, r.pageCount());
        long high = (1L << 32) + 12345;
        r.page(high).set(JAVA_LONG, 8, 0xABCDL);
        assertEquals(0xABCDL, r.memory().get(JAVA_LONG, high * PAGE + 8));
        assertEquals(high * PAGE, r.pages(high, 2).address() - r.memory().address());
        if (r.populationSource() == GuestRegion.PopulationSource.PAGE_TABLES) {
            assertEquals(high, r.nextPopulatedPage(1L << 32, pages));
            assertEquals(high + 1, r.nextUnpopulatedPage(high, pages));
        }
        r.discard(high, 1);
        assertEquals(0L, r.memory().get(JAVA_LONG, high * PAGE + 8));
    }

    @Test
    void closingUnmapsEverything() {
        GuestRegion r = ram.open(RegionSpec.memfd("ram", 4 * PAGE));
        MemorySegment m = r.memory();
        ram.close();
        assertThrows(IllegalStateException.class, () -> m.get(JAVA_BYTE, 0));
        assertThrows(IllegalStateException.class, () -> ram.open(RegionSpec.memfd("again", PAGE)));
        try (Arena arena = Arena.ofConfined()) {
            assertTrue(arena.allocate(8).byteSize() == 8); // the JVM is fine
        }
    }
}
