package io.pagewire.ramtracker.linux;

import io.pagewire.ramtracker.RamTrackerException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The userfaultfd ioctls postcopy will build on: MISSING + UFFDIO_COPY / UFFDIO_ZEROPAGE, and
 * MINOR + UFFDIO_CONTINUE over a second mapping of a memfd. No fault thread is needed: placing a
 * page that nobody waits for is allowed.
 */
class UserfaultfdTest {
    static final long PAGE = 4096;

    @BeforeAll
    static void available() {
        assumeTrue(Userfaultfd.isAvailable(), () -> "userfaultfd unavailable: " + Userfaultfd.unavailabilityCause());
    }

    @Test
    void probeNamesMissingFeatures() {
        long offered = Userfaultfd.availableFeatures();
        assertNull(Userfaultfd.missingFeatures(offered));
        long unknown = 1L << 62;
        String missing = Userfaultfd.missingFeatures(unknown);
        assertEquals("this kernel's userfaultfd lacks UFFD_FEATURE bit 62", missing);
        assertEquals("UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+), UFFD_FEATURE_WP_ASYNC (Linux 6.7+)",
                Userfaultfd.featureNames(Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED));
        RamTrackerException e = assertThrows(RamTrackerException.class, () -> Userfaultfd.open(unknown));
        assertTrue(e.getMessage().contains("lacks UFFD_FEATURE bit 62"), e.getMessage());
    }

    @Test
    void copyAndZeroPageFillMissingPages() {
        try (Arena arena = Arena.ofConfined(); Userfaultfd uffd = Userfaultfd.open(0)) {
            MemorySegment dst = Mappings.mapAnonymous(8 * PAGE, false, arena);
            MemorySegment src = Mappings.mapAnonymous(PAGE, false, arena);
            src.set(JAVA_LONG, 8, 0xCAFEL);
            long ioctls = uffd.register(dst, Userfaultfd.MODE_MISSING);
            assertTrue((ioctls & (1L << 3)) != 0, "UFFDIO_COPY allowed on the range");
            assertEquals(PAGE, uffd.copy(dst.asSlice(3 * PAGE, PAGE), src, true));
            assertEquals(0xCAFEL, NativeMemory.getLong(dst, 3 * PAGE + 8));
            RamTrackerException again = assertThrows(RamTrackerException.class, () -> uffd.copy(dst.asSlice(3 * PAGE, PAGE), src, true));
            assertEquals(17, again.errno(), "EEXIST: the page is already there");
            assertTrue(again.getMessage().contains("UFFDIO_COPY"), again.getMessage());
            assertEquals(PAGE, uffd.zeroPage(dst.asSlice(4 * PAGE, PAGE)));
            assertEquals(0L, NativeMemory.getLong(dst, 4 * PAGE));
            uffd.wake(dst);
            uffd.unregister(dst);
            assertThrows(IllegalArgumentException.class, () -> uffd.copy(dst.asSlice(0, 2 * PAGE), src, true));
        }
    }

    @Test
    void continueMapsAPagePlacedThroughASecondMapping() {
        assumeTrue(Userfaultfd.missingFeatures(Userfaultfd.FEATURE_MINOR_SHMEM) == null,
                () -> "no MINOR faults on shmem: " + Userfaultfd.missingFeatures(Userfaultfd.FEATURE_MINOR_SHMEM));
        try (Arena arena = Arena.ofConfined(); NativeFile f = NativeFile.memfd("minor", false);
             Userfaultfd uffd = Userfaultfd.open(Userfaultfd.FEATURE_MINOR_SHMEM)) {
            f.truncate(4 * PAGE);
            MemorySegment guest = Mappings.mapShared(f, 0, 4 * PAGE, arena);
            MemorySegment placer = Mappings.mapShared(f, 0, 4 * PAGE, arena);
            uffd.register(guest, Userfaultfd.MODE_MINOR);
            placer.set(JAVA_LONG, 2 * PAGE, 77L);          // the page is now in the page cache
            assertEquals(PAGE, uffd.continueRange(guest.asSlice(2 * PAGE, PAGE)));
            assertEquals(77L, NativeMemory.getLong(guest, 2 * PAGE));
            uffd.unregister(guest);
        }
    }

    @Test
    void writeProtectOnAnUnregisteredRangeFailsWithTheRange() {
        try (Arena arena = Arena.ofConfined(); Userfaultfd uffd = Userfaultfd.open(0)) {
            MemorySegment m = Mappings.mapAnonymous(2 * PAGE, false, arena);
            RamTrackerException e = assertThrows(RamTrackerException.class, () -> uffd.writeProtect(m, true));
            assertTrue(e.getMessage().startsWith("ioctl(UFFDIO_WRITEPROTECT) failed for [0x" + Long.toHexString(m.address())), e.getMessage());
        }
    }

    @Test
    void closedDescriptorIsRefused() {
        Userfaultfd uffd = Userfaultfd.open(0);
        uffd.close();
        uffd.close();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = Mappings.mapAnonymous(PAGE, false, arena);
            RamTrackerException e = assertThrows(RamTrackerException.class, () -> uffd.register(m, Userfaultfd.MODE_MISSING));
            assertTrue(e.getMessage().contains("closed userfaultfd"), e.getMessage());
        }
    }
}
