package io.pagewire.ramtracker.bitmap;

import io.pagewire.ramtracker.linux.Linux;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.EnumSet;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class DirtyBitmapTest {
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    static BitSet random(Random rnd, int pages, double density) {
        BitSet b = new BitSet(pages);
        for (int i = 0; i < pages; i++) {
            if (rnd.nextDouble() < density) {
                b.set(i);
            }
        }
        return b;
    }

    static DirtyBitmap of(Arena arena, BitSet bits, int pages) {
        DirtyBitmap d = DirtyBitmap.allocate(pages, arena);
        bits.stream().forEach(d::mark);
        return d;
    }

    static BitSet toBitSet(DirtyBitmap d) {
        BitSet b = new BitSet();
        for (long p = d.nextDirty(0, d.pageCount()); p < d.pageCount(); p = d.nextDirty(p + 1, d.pageCount())) {
            b.set(Math.toIntExact(p));
        }
        return b;
    }

    @Test
    void singlePageOperations() {
        DirtyBitmap d = DirtyBitmap.allocate(130, arena);
        assertEquals(130, d.pageCount());
        assertEquals(3, d.wordCount());
        assertFalse(d.isDirty(64));
        d.mark(64);
        d.markAtomic(129);
        d.mark(0);
        assertTrue(d.isDirty(64));
        assertEquals(3, d.count());
        assertEquals(0, d.nextDirty(0, 130));
        assertEquals(64, d.nextDirty(1, 130));
        assertEquals(129, d.nextDirty(65, 130));
        assertEquals(100, d.nextDirty(65, 100), "none before toPage");
        assertEquals(1, d.nextClean(0, 130));
        assertTrue(d.testAndClear(64));
        assertFalse(d.testAndClear(64));
        assertEquals(2, d.count());
        assertEquals(1L << 1, d.take(2, -1L));
        assertEquals(0, d.take(2, -1L));
        IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> d.mark(130));
        assertEquals("page 130 outside the bitmap's [0, 130)", e.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> d.markRange(100, 31));
        assertThrows(IndexOutOfBoundsException.class, () -> d.nextDirty(5, 131));
    }

    @Test
    void wrapsExistingWordsWithoutCopying() {
        long[] words = new long[3];
        DirtyBitmap d = DirtyBitmap.wrap(MemorySegment.ofArray(words), 150);
        d.mark(1);
        d.markAtomic(130);
        assertEquals(2L, words[0]);
        assertEquals(1L << 2, words[2]);
        assertTrue(d.testAndClear(1));
        assertEquals(0L, words[0]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DirtyBitmap.wrap(MemorySegment.ofArray(words), 200));
        assertEquals("a bitmap of 200 pages needs 32 bytes, the segment has 24", e.getMessage());
    }

    @Test
    void rangeOperationsMatchAReference() {
        Random rnd = new Random(0x5eed_0001L);
        for (int iter = 0; iter < 500; iter++) {
            int pages = 1 + rnd.nextInt(700);
            BitSet ref = random(rnd, pages, rnd.nextDouble());
            DirtyBitmap d = of(arena, ref, pages);
            int from = rnd.nextInt(pages);
            int count = rnd.nextInt(pages - from + 1);
            String ctx = "iteration " + iter + ": pages=" + pages + " range [" + from + ", +" + count + ")";
            assertEquals(ref.get(from, from + count).cardinality(), d.count(from, count), ctx);
            int nd = ref.nextSetBit(from);
            assertEquals(nd < 0 || nd >= from + count ? from + count : nd, d.nextDirty(from, from + count), ctx);
            int nc = ref.nextClearBit(from);
            assertEquals(Math.min(nc, from + count), d.nextClean(from, from + count), ctx);
            switch (rnd.nextInt(4)) {
                case 0 -> {
                    d.markRange(from, count);
                    ref.set(from, from + count);
                }
                case 1 -> {
                    d.markRangeAtomic(from, count);
                    ref.set(from, from + count);
                }
                case 2 -> {
                    d.clearRange(from, count);
                    ref.clear(from, from + count);
                }
                default -> {
                    d.clearRangeAtomic(from, count);
                    ref.clear(from, from + count);
                }
            }
            assertEquals(ref, toBitSet(d), ctx);
            assertEquals(ref.cardinality(), d.count(), ctx);
        }
    }

    @Test
    void cursorReportsEveryDirtyPageInOrderInBatches() {
        Random rnd = new Random(0x5eed_0002L);
        for (int iter = 0; iter < 300; iter++) {
            int pages = 1 + rnd.nextInt(5000);
            BitSet ref = random(rnd, pages, new double[] {0.001, 0.01, 0.3, 0.9, 1.0}[rnd.nextInt(5)]);
            DirtyBitmap d = of(arena, ref, pages);
            int from = rnd.nextInt(pages);
            int to = from + rnd.nextInt(pages - from + 1);
            long[] out = new long[64 + rnd.nextInt(200)];
            boolean take = rnd.nextBoolean();
            DirtyBitmap.Cursor c = d.cursor().reset(from, to, take);
            BitSet seen = new BitSet();
            long last = -1;
            int n;
            while ((n = c.next(out)) > 0) {
                for (int i = 0; i < n; i++) {
                    assertTrue(out[i] > last, "in order");
                    last = out[i];
                    seen.set(Math.toIntExact(out[i]));
                }
            }
            BitSet expected = ref.get(from, to);
            BitSet shifted = new BitSet();
            expected.stream().forEach(i -> shifted.set(i + from));
            assertEquals(shifted, seen, "iteration " + iter);
            BitSet remaining = toBitSet(d);
            BitSet expectedRemaining = (BitSet) ref.clone();
            if (take) {
                expectedRemaining.clear(from, to);
            }
            assertEquals(expectedRemaining, remaining, "taking mode clears exactly what it reported");
        }
        assertThrows(IllegalArgumentException.class, () -> DirtyBitmap.allocate(10, arena).cursor().reset(0, 10).next(new long[63]));
    }

    @Test
    void pageIndicesAboveTwoToTheThirtyTwo() {
        assumeTrue(Linux.isAvailable(), () -> "large bitmaps are mapped lazily, which needs the native layer: " + Linux.unavailabilityCause());
        // 2^34 pages (a 64 TiB guest of 4 KiB pages): 2 GiB of bitmap, mapped lazily, a few pages touched.
        long pages = 1L << 34;
        DirtyBitmap d = DirtyBitmap.allocate(pages, arena);
        assertEquals(pages, d.pageCount());
        assertEquals(pages / 64, d.wordCount());
        long p = (1L << 33) + 7;
        d.mark(p);
        d.markRange((1L << 32) - 3, 6);   // across the 2^32 boundary
        assertTrue(d.isDirty(p));
        assertTrue(d.isDirty((1L << 32) + 2));
        assertFalse(d.isDirty((1L << 32) + 3));
        assertEquals((1L << 32) - 3, d.nextDirty((1L << 32) - 100, pages));
        assertEquals((1L << 32) + 3, d.nextClean((1L << 32) - 3, pages));
        assertEquals(p, d.nextDirty((1L << 32) + 3, p + 1000));
        assertEquals(7, d.count((1L << 32) - 64, (1L << 33) + 100 - ((1L << 32) - 64)));
        long[] out = new long[128];
        DirtyBitmap.Cursor c = d.cursor().reset((1L << 33) - 64, (1L << 33) + 64, true);
        assertEquals(1, c.next(out));
        assertEquals(p, out[0]);
        assertEquals(0, c.next(out));
        assertFalse(d.isDirty(p));
        // Sync a KVM-format log into pages above 2^32, aligned and not.
        MemorySegment log = MemorySegment.ofArray(new long[] {0b1011L, 1L << 63});
        long base = (1L << 33) + 640;
        assertEquals(4, d.syncFrom(log, 0, base, 128));
        assertTrue(d.isDirty(base) && d.isDirty(base + 1) && d.isDirty(base + 3) && d.isDirty(base + 127));
        assertEquals(4, d.syncFrom(log, 0, base + 1000 + 5, 128));
        assertTrue(d.isDirty(base + 1005) && d.isDirty(base + 1006) && d.isDirty(base + 1008) && d.isDirty(base + 1132));
        assertEquals(8, d.count(base, 2000));
    }

    @Test
    void clientsHaveTheirOwnBitmapsFedTogether() {
        DirtyClients clients = new DirtyClients(1000, EnumSet.of(DirtyClient.MIGRATION, DirtyClient.SNAPSHOT), arena);
        assertEquals(EnumSet.of(DirtyClient.MIGRATION, DirtyClient.SNAPSHOT), clients.clients());
        clients.markRange(10, 5);
        MemorySegment log = MemorySegment.ofArray(new long[] {1L, 0});
        assertEquals(1, clients.syncFrom(log, 0, 100, 128));
        DirtyBitmap migration = clients.bitmap(DirtyClient.MIGRATION);
        DirtyBitmap snapshot = clients.bitmap(DirtyClient.SNAPSHOT);
        assertEquals(6, migration.count());
        assertEquals(6, snapshot.count());
        assertTrue(migration.testAndClear(12));
        assertTrue(snapshot.isDirty(12), "the snapshot still needs page 12");
        assertThrows(IllegalArgumentException.class, () -> clients.bitmap(DirtyClient.CHECKPOINT));
        assertEquals(0, clients.syncFrom(log, 0, 100, 128), "page 100 is already dirty for the migration");
    }
}
