package io.pagewire.ramtracker.linux;

import io.pagewire.ramtracker.RamTrackerException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The native layer against the real kernel: memfd, mmap, madvise, fallocate, lseek. */
class NativeLayerTest {
    static final long PAGE = 4096;

    @BeforeAll
    static void linux() {
        assumeTrue(Linux.isAvailable(), () -> "native layer unavailable: " + Linux.unavailabilityCause());
    }

    @Test
    void probeReportsAvailableWithFlagAdvice() {
        assertNull(Linux.unavailabilityCause());
        assertEquals(PAGE, Linux.basePageSize());
        // Tests run on the class path with --enable-native-access=ALL-UNNAMED (parent pom).
        assertEquals("--enable-native-access=ALL-UNNAMED", Linux.nativeAccessFlag());
        assertTrue(Linux.isNativeAccessEnabled(), "surefire passes --enable-native-access=ALL-UNNAMED");
        assertEquals("ENOMEM (Cannot allocate memory)", Linux.describeErrno(12));
    }

    @Test
    void memfdHolesAndDataAreFoundWithoutReading() {
        try (Arena arena = Arena.ofConfined(); NativeFile f = NativeFile.memfd("test", false)) {
            f.truncate(64 * PAGE);
            assertEquals(64 * PAGE, f.size());
            assertTrue(f.fileSystem().isTmpfs(), "memfds live on shmem");
            assertEquals(-1, f.nextData(0), "a fresh memfd is one hole");
            MemorySegment m = Mappings.mapShared(f, 0, 64 * PAGE, arena);
            m.set(JAVA_BYTE, 10 * PAGE + 5, (byte) 1);
            m.set(JAVA_BYTE, 11 * PAGE, (byte) 2);
            m.set(JAVA_BYTE, 40 * PAGE + 4095, (byte) 3);
            assertEquals(10 * PAGE, f.nextData(0));
            assertEquals(12 * PAGE, f.nextHole(10 * PAGE));
            assertEquals(40 * PAGE, f.nextData(12 * PAGE));
            assertEquals(41 * PAGE, f.nextHole(40 * PAGE));
            assertEquals(-1, f.nextData(41 * PAGE));
            f.punchHole(10 * PAGE, PAGE);
            assertEquals(11 * PAGE, f.nextData(0));
            assertEquals(0, m.get(JAVA_BYTE, 10 * PAGE + 5), "a punched page reads as zeros through the mapping");
            f.allocate(50 * PAGE, 2 * PAGE);
            assertEquals(64 * PAGE, f.size());
        }
    }

    @Test
    void twoMappingsOfOneMemfdShareItsPages() {
        try (Arena arena = Arena.ofConfined(); NativeFile f = NativeFile.memfd("twice", false)) {
            f.truncate(4 * PAGE);
            MemorySegment a = Mappings.mapShared(f, 0, 4 * PAGE, arena);
            MemorySegment b = Mappings.mapShared(f, 0, 4 * PAGE, arena);
            assertTrue(a.address() != b.address());
            a.set(JAVA_LONG, PAGE, 0x1122334455667788L);
            assertEquals(0x1122334455667788L, b.get(JAVA_LONG, PAGE));
        }
    }

    @Test
    void anonymousMemoryPopulatesAndDiscards() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = Mappings.mapAnonymous(16 * PAGE, false, arena);
            assertEquals(16 * PAGE, PageMap.isAvailable() ? PageMap.nextPopulated(m, 0, 16 * PAGE) : 16 * PAGE);
            Mappings.populateWrite(m.asSlice(4 * PAGE, 2 * PAGE));
            if (PageMap.isAvailable()) {
                assertEquals(4 * PAGE, PageMap.nextPopulated(m, 0, 16 * PAGE));
                assertEquals(6 * PAGE, PageMap.nextUnpopulated(m, 4 * PAGE, 16 * PAGE));
            }
            m.set(JAVA_LONG, 5 * PAGE, 42L);
            Mappings.dontNeed(m.asSlice(5 * PAGE, PAGE));
            assertEquals(0L, m.get(JAVA_LONG, 5 * PAGE));
            Mappings.adviseHugePages(m);
        }
        // The mapping is gone with its arena.
    }

    @Test
    void failuresNameTheCallTheArgumentAndTheErrno() {
        RamTrackerException e = assertThrows(RamTrackerException.class,
                () -> NativeFile.open(Path.of("/nonexistent-dir-pagewire/ram")));
        assertEquals(2, e.errno());
        assertTrue(e.getMessage().contains("open failed for /nonexistent-dir-pagewire/ram: ENOENT"), e.getMessage());
        try (Arena arena = Arena.ofConfined()) {
            // 2^50 bytes of reserved anonymous memory cannot be had (no MAP_NORESERVE).
            RamTrackerException big = assertThrows(RamTrackerException.class, () -> Mappings.mapAnonymous(1L << 50, false, arena));
            assertEquals(12, big.errno());
            assertTrue(big.getMessage().startsWith("mmap failed for 1125899906842624 bytes of anonymous memory: ENOMEM"), big.getMessage());
            assertThrows(IllegalArgumentException.class, () -> Mappings.mapAnonymous(0, false, arena));
        }
    }

    @Test
    void errnoIsPerThread() throws Exception {
        // One thread fails with ENOENT while another fails with ENOMEM; each sees its own errno.
        try (ExecutorService pool = Executors.newFixedThreadPool(2)) {
            Future<?> enoent = pool.submit(() -> {
                for (int i = 0; i < 300; i++) {
                    RamTrackerException e = assertThrows(RamTrackerException.class, () -> NativeFile.open(Path.of("/nonexistent-dir-pagewire/x")));
                    assertEquals(2, e.errno());
                }
            });
            Future<?> enomem = pool.submit(() -> {
                try (Arena arena = Arena.ofConfined()) {
                    for (int i = 0; i < 300; i++) {
                        RamTrackerException e = assertThrows(RamTrackerException.class, () -> Mappings.mapAnonymous(1L << 50, false, arena));
                        assertEquals(12, e.errno());
                    }
                }
            });
            enoent.get(30, TimeUnit.SECONDS);
            enomem.get(30, TimeUnit.SECONDS);
        }
    }
}
