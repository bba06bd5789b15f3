package io.pagewire.ramtracker.linux;

import io.pagewire.ramtracker.RamTrackerException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** PAGEMAP_SCAN against real page tables. */
class PageMapTest {
    static final long PAGE = 4096;

    @BeforeAll
    static void available() {
        assumeTrue(PageMap.isAvailable(), () -> "PAGEMAP_SCAN unavailable: " + PageMap.unavailabilityCause());
    }

    @Test
    void populationIsReadFromThePageTables() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = Mappings.mapAnonymous(1024 * PAGE, false, arena);
            Mappings.adviseNoHugePages(m); // exact page-by-page population on any THP setting
            assertEquals(1024 * PAGE, PageMap.nextPopulated(m, 0, 1024 * PAGE));
            assertEquals(0, PageMap.nextUnpopulated(m, 0, 1024 * PAGE));
            m.set(JAVA_BYTE, 700 * PAGE, (byte) 1);
            m.set(JAVA_BYTE, 701 * PAGE, (byte) 1);
            assertEquals(700 * PAGE, PageMap.nextPopulated(m, 0, 1024 * PAGE));
            assertEquals(702 * PAGE, PageMap.nextUnpopulated(m, 700 * PAGE, 1024 * PAGE));
            assertEquals(800 * PAGE, PageMap.nextPopulated(m, 702 * PAGE, 800 * PAGE), "bounded by the end asked for");
            assertThrows(IndexOutOfBoundsException.class, () -> PageMap.nextPopulated(m, 0, 1025 * PAGE));
        }
    }

    @Test
    void collectingFromMemoryThatIsNotWriteProtectedIsRefused() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = Mappings.mapAnonymous(16 * PAGE, false, arena);
            m.set(JAVA_BYTE, 0, (byte) 1);
            List<long[]> ranges = new ArrayList<>();
            RamTrackerException e = assertThrows(RamTrackerException.class,
                    () -> PageMap.collectWritten(m, 0, 16 * PAGE, true, (s, x) -> ranges.add(new long[] {s, x})));
            assertTrue(e.getMessage().contains("PAGEMAP_SCAN"), e.getMessage());
            assertTrue(e.getMessage().contains("async write-protect"), e.getMessage());
            assertTrue(ranges.isEmpty());
        }
    }
}
