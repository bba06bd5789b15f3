package io.pagewire.ramtracker;

import io.pagewire.ramtracker.linux.Linux;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.NativeFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** A region adopts a file handed over by another process: its memory becomes that file's, at the same addresses. */
@Timeout(30)
class AdoptTest {
    static final long SIZE = 8L << 20;
    GuestRam ram;
    Arena arena;

    @BeforeAll
    static void linux() {
        assumeTrue(Linux.isAvailable(), () -> "native layer unavailable: " + Linux.unavailabilityCause());
    }

    @BeforeEach
    void open() {
        ram = GuestRam.create();
        arena = Arena.ofShared();
    }

    @AfterEach
    void close() {
        arena.close();
        ram.close();
    }

    @Test
    void theRegionShowsTheAdoptedFileLiveAtTheSameAddress() {
        GuestRegion region = ram.open(RegionSpec.anonymous("pc.ram", SIZE));
        region.memory().set(JAVA_LONG, 0, 111); // what it held before is dropped
        long address = region.memory().address();
        NativeFile source = NativeFile.memfd("source", false);
        source.truncate(SIZE + 4096);
        MemorySegment sourceView = Mappings.mapShared(source, 0, SIZE + 4096, arena);
        sourceView.set(JAVA_LONG, 4096 + 8, 0x5eed);
        region.adopt(source.fd(), 4096); // the region owns the descriptor from here on
        assertEquals(address, region.memory().address(), "same addresses: every view of the region stays valid");
        assertEquals(0x5eed, region.memory().get(JAVA_LONG, 8), "the file's pages, from the offset");
        sourceView.set(JAVA_LONG, 4096 + 4096, 42);
        assertEquals(42, region.memory().get(JAVA_LONG, 4096), "live: the other side's writes are here at once");
        region.memory().set(JAVA_LONG, 16, 7);
        assertEquals(7, sourceView.get(JAVA_LONG, 4096 + 16), "and this side's are there");
        assertTrue(region.file().isPresent());
        assertSame(GuestRegion.PopulationSource.FILE_HOLES, region.populationSource());
    }

    @Test
    void aFileShorterThanTheRegionIsRefusedAndClosed() {
        GuestRegion region = ram.open(RegionSpec.anonymous("pc.ram", SIZE));
        NativeFile small = NativeFile.memfd("small", false);
        small.truncate(SIZE - 4096);
        RamTrackerException e = assertThrows(RamTrackerException.class, () -> region.adopt(small.fd(), 0));
        assertTrue(e.getMessage().contains("needs " + SIZE) && e.getMessage().contains("holds " + (SIZE - 4096)), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> region.adopt(NativeFile.memfd("odd", false).fd(), 100));
        assertTrue(region.file().isEmpty(), "nothing adopted");
    }
}
