package io.pagewire.ramtracker.bitmap;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One marking thread (syncs and range marks, plain read-modify-write) against taking threads
 * (a taking cursor, test-and-clear): no mark may be lost. A page marked at least once is either
 * taken by some taker or still dirty at the end.
 */
class DirtyBitmapConcurrencyTest {
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    @Test
    void marksAreNeverLostToConcurrentTakers() throws Exception {
        int pages = 1 << 16;
        DirtyBitmap d = DirtyBitmap.allocate(pages, arena);
        AtomicBoolean done = new AtomicBoolean();
        BitSet marked = new BitSet(pages);
        BitSet takenByCursor = new BitSet(pages);
        BitSet takenSingly = new BitSet(pages);
        try (ExecutorService pool = Executors.newFixedThreadPool(3)) {
            Future<?> marker = pool.submit(() -> {
                Random rnd = new Random(11);
                long[] words = new long[64];
                MemorySegment log = MemorySegment.ofArray(words);
                for (int round = 0; round < 3000; round++) {
                    for (int i = 0; i < words.length; i++) {
                        words[i] = rnd.nextLong() & rnd.nextLong() & rnd.nextLong();
                    }
                    int first = rnd.nextInt(pages - 64 * 64);
                    int shift = rnd.nextInt(64);
                    int count = 64 * 63;
                    d.syncFrom(log, shift, first, count);
                    for (int i = 0; i < count; i++) {
                        int b = shift + i;
                        if ((words[b >>> 6] & (1L << b)) != 0) {
                            marked.set(first + i);
                        }
                    }
                    int r = rnd.nextInt(pages - 100);
                    int n = rnd.nextInt(100);
                    d.markRange(r, n);
                    marked.set(r, r + n);
                }
                done.set(true);
            });
            Future<?> cursorTaker = pool.submit(() -> {
                long[] out = new long[512];
                DirtyBitmap.Cursor c = d.cursor();
                boolean last = false;
                while (!last) {
                    last = done.get(); // one more full pass after the marker finished
                    c.reset(0, pages, true);
                    int n;
                    while ((n = c.next(out)) > 0) {
                        for (int i = 0; i < n; i++) {
                            takenByCursor.set((int) out[i]);
                        }
                    }
                }
            });
            Future<?> singleTaker = pool.submit(() -> {
                Random rnd = new Random(12);
                while (!done.get()) {
                    int p = rnd.nextInt(pages);
                    if (d.testAndClear(p)) {
                        takenSingly.set(p);
                    }
                }
            });
            marker.get(60, TimeUnit.SECONDS);
            cursorTaker.get(60, TimeUnit.SECONDS);
            singleTaker.get(60, TimeUnit.SECONDS);
        }
        BitSet accounted = DirtyBitmapTest.toBitSet(d);
        accounted.or(takenByCursor);
        accounted.or(takenSingly);
        BitSet lost = (BitSet) marked.clone();
        lost.andNot(accounted);
        assertEquals(new BitSet(), lost, "marked pages neither taken nor still dirty");
        BitSet phantom = (BitSet) accounted.clone();
        phantom.andNot(marked);
        assertEquals(new BitSet(), phantom, "pages reported that were never marked");
        assertTrue(takenByCursor.cardinality() > 0 && takenSingly.cardinality() > 0);
    }
}
