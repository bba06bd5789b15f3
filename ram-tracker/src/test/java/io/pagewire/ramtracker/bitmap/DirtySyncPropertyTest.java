package io.pagewire.ramtracker.bitmap;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Seed 001's sync: the whole-word path (64-aligned offset) and the shifting path must give
 * exactly what the bit-by-bit reference gives, for random offsets, lengths and patterns.
 * Seeded: a failure message names the seed and iteration that reproduce it.
 */
class DirtySyncPropertyTest {
    static final long SEED = 0x5eed_5a11_0001L;
    static final ValueLayout.OfLong LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    enum Path { AUTO, ALIGNED_OR_SHIFTED }

    @Test
    void wordPathsEqualTheBitByBitReference() {
        Random rnd = new Random(SEED);
        int aligned = 0;
        int unaligned = 0;
        for (int iter = 0; iter < 3000; iter++) {
            long pages = 1 + rnd.nextInt(rnd.nextBoolean() ? 200 : 5000);
            long count = rnd.nextInt((int) pages + 1);
            long firstPage = rnd.nextLong(pages - count + 1);
            // Aligned in a third of the cases, else any offset.
            long logFirstBit = rnd.nextInt(3) == 0 ? (firstPage & 63) + 64L * rnd.nextInt(4) : rnd.nextInt(300);
            long logWords = DirtyBitmap.wordsFor(logFirstBit + count) + rnd.nextInt(3);
            // Log memory: heap, native, or native at an odd address (KVM buffers need not be aligned here).
            MemorySegment log = switch (rnd.nextInt(3)) {
                case 0 -> MemorySegment.ofArray(new long[(int) logWords]);
                case 1 -> arena.allocate(logWords * 8, 8);
                default -> arena.allocate(logWords * 8 + 8, 8).asSlice(3, logWords * 8);
            };
            double density = new double[] {0, 0.01, 0.5, 0.99, 1}[rnd.nextInt(5)];
            for (long w = 0; w < logWords; w++) {
                long v = 0;
                for (int b = 0; b < 64; b++) {
                    if (rnd.nextDouble() < density) {
                        v |= 1L << b;
                    }
                }
                log.set(LE, w * 8, v);
            }
            DirtyBitmap actual = DirtyBitmap.allocate(pages, arena);
            DirtyBitmap reference = DirtyBitmap.allocate(pages, arena);
            double dstDensity = rnd.nextDouble() * 0.5;
            for (long p = 0; p < pages; p++) {
                if (rnd.nextDouble() < dstDensity) {
                    actual.mark(p);
                    reference.mark(p);
                }
            }
            boolean isAligned = ((firstPage - logFirstBit) & 63) == 0;
            if (isAligned) {
                aligned++;
            } else {
                unaligned++;
            }
            Path path = Path.values()[rnd.nextInt(2)];
            long n = switch (path) {
                case AUTO -> actual.syncFrom(log, logFirstBit, firstPage, count);
                case ALIGNED_OR_SHIFTED -> count == 0 ? 0 : isAligned ? actual.syncAligned(log, logFirstBit, firstPage, count)
                        : actual.syncShifted(log, logFirstBit, firstPage, count);
            };
            long expected = reference.syncBitByBit(log, logFirstBit, firstPage, count);
            String ctx = "seed " + SEED + " iteration " + iter + ": pages " + pages + ", log bits [" + logFirstBit + ", +" + count + ") -> page "
                    + firstPage + " (" + (isAligned ? "aligned" : "shifted") + ", " + path + ")";
            assertEquals(expected, n, ctx + ": newly dirty count");
            for (long w = 0; w < actual.wordCount(); w++) {
                assertEquals(reference.word(w), actual.word(w), ctx + ": word " + w);
            }
        }
        assertTrue(aligned > 500 && unaligned > 500, "both paths exercised: aligned " + aligned + ", unaligned " + unaligned);
    }

    @Test
    void aShortLogIsRefusedWithTheSizeNeeded() {
        DirtyBitmap d = DirtyBitmap.allocate(1000, arena);
        MemorySegment log = MemorySegment.ofArray(new long[2]);
        IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> d.syncFrom(log, 5, 0, 128));
        assertEquals("dirty log of 16 bytes is too short for bits [5, +128): KVM_GET_DIRTY_LOG format needs 24 bytes (whole 64-bit words)",
                e.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> d.syncFrom(log, 0, 950, 100));
        assertThrows(IndexOutOfBoundsException.class, () -> d.syncFrom(log, -1, 0, 10));
    }
}
