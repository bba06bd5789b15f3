package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The population-aware, chunked, parallel checksum against a plain CRC32C that reads every byte,
 * on real memfd and anonymous regions with holes.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class RamChecksumTest {
    private static final long PAGE = 4096;
    /** Three whole chunks and a part of a fourth: the last chunk is short. */
    private static final long SIZE = 3 * RamChecksum.CHUNK_BYTES + 5 * PAGE;

    /** Pages written: the first, the last, both sides of each chunk boundary, and a run inside a chunk. */
    private static final long[] WRITTEN = {0, 1, 777, 16383, 16384, 32767, 32768, 40000, 40001, 40002, 49152, SIZE / PAGE - 1};

    /** Pages written with zeros (populated, so read: the zero scan finds them), around and between written ones. */
    private static final long[] ZEROED = {2, 3, 4, 776, 778, 16385, 39999, 40003, 40004};
    /** A written page whose only non-zero byte is its last one. */
    private static final long LAST_BYTE_PAGE = 5;

    private static void write(GuestRegion r) {
        MemorySegment m = r.memory();
        for (long p : WRITTEN) {
            for (long off = 0; off < PAGE; off += 8) {
                m.set(ValueLayout.JAVA_LONG_UNALIGNED, p * PAGE + off, p * 0x9E3779B97F4A7C15L + off);
            }
        }
        for (long p : ZEROED) {
            r.page(p).fill((byte) 0);
        }
        m.set(ValueLayout.JAVA_BYTE, LAST_BYTE_PAGE * PAGE + PAGE - 1, (byte) 1);
    }

    /** Pages populated by {@link #write}. */
    private static final long POPULATED = WRITTEN.length + ZEROED.length + 1;

    private static long[] checksum(List<GuestRegion> regions, long[] readBytes) {
        try (RamChecksum sum = new RamChecksum(regions, 3, "test-checksum-")) {
            sum.submit(0, 1); // one chunk early, the rest later: the result must not depend on it
            sum.submitAll();
            long[] crcs = sum.result().join();
            assertEquals(sum.totalBytes(), sum.doneBytes(), "every byte is accounted for");
            readBytes[0] = sum.readBytes();
            return crcs;
        }
    }

    @Test
    void memfdWithHolesMatchesReadingEveryByteWithoutReadingTheHoles() {
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion r = ram.open(RegionSpec.memfd("sparse", SIZE));
            write(r);
            long[] read = new long[1];
            long[] crcs = checksum(List.of(r), read);
            // Only now read everything (which allocates the holes): the reference.
            assertArrayEquals(new long[]{Checksums.crc32c(r.memory())}, crcs);
            assertTrue(read[0] >= POPULATED * PAGE && read[0] % PAGE == 0, "read " + read[0]);
            // Even if the kernel backs the memfd with 2 MiB pages, the holes between them were not read.
            assertTrue(read[0] <= POPULATED * (2L << 20), "read " + read[0] + " bytes of a region with " + POPULATED + " pages populated");
        }
    }

    @Test
    void anonymousRegionsAndSeveralRegionsMatchReadingEveryByte() {
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion a = ram.open(RegionSpec.anonymous("anon", SIZE));
            GuestRegion b = ram.open(RegionSpec.memfd("untouched", 2 * PAGE)); // smaller than a chunk, never written
            write(a);
            long[] read = new long[1];
            long[] crcs = checksum(List.of(a, b), read);
            assertEquals(Checksums.zeros(2 * PAGE), crcs[1], "a never-written region is all zeros");
            assertArrayEquals(new long[]{Checksums.crc32c(a.memory()), Checksums.crc32c(b.memory())}, crcs);
            assertTrue(read[0] < SIZE, "the holes of the anonymous region were not read: " + read[0] + " of " + SIZE);
        }
    }

    @Test
    void aFullyWrittenRegionIsReadWhole() {
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion r = ram.open(RegionSpec.memfd("full", RamChecksum.CHUNK_BYTES + 3 * PAGE));
            r.memory().fill((byte) 0x5a);
            long[] read = new long[1];
            long[] crcs = checksum(List.of(r), read);
            assertArrayEquals(new long[]{Checksums.crc32c(r.memory())}, crcs);
            assertEquals(r.sizeBytes(), read[0]);
        }
    }

    @Test
    void closingStopsTheWorkAndFailsTheResult() {
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion r = ram.open(RegionSpec.memfd("stopped", SIZE));
            write(r);
            RamChecksum sum = new RamChecksum(List.of(r), 1, "test-checksum-");
            sum.submit(0, 0);
            sum.close(); // returns only when nothing reads the region any more
            sum.submitAll(); // after closing: dropped, not an error
            assertThrows(CompletionException.class, () -> sum.result().join());
        }
    }
}
