package io.pagewire.ramtracker.scan;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BalloonMapTest {
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    @Test
    void rangesMarkUnmarkAndRunBoundaries() {
        BalloonMap b = new BalloonMap(10_000, arena);
        b.mark(100, 3000);
        b.mark(5000, 1);
        assertEquals(3001, b.count());
        assertTrue(b.isBallooned(100) && b.isBallooned(3099) && b.isBallooned(5000));
        assertFalse(b.isBallooned(99) || b.isBallooned(3100));
        assertEquals(100, b.nextBallooned(0, 10_000));
        assertEquals(3100, b.nextNotBallooned(100, 10_000));
        assertEquals(5000, b.nextBallooned(3100, 10_000));
        b.unmark(1000, 500);
        assertEquals(1000, b.nextNotBallooned(100, 10_000));
        assertEquals(1500, b.nextBallooned(1000, 10_000));
        assertEquals(2501, b.count());
    }

    @Test
    void concurrentMarkersOfNeighbouringRangesSharingWordsLoseNothing() throws Exception {
        BalloonMap b = new BalloonMap(1 << 16, arena);
        try (ExecutorService pool = Executors.newFixedThreadPool(2)) {
            // Thread 0 marks pages 3 mod 7, thread 1 the others: every word is shared.
            Future<?> f0 = pool.submit(() -> {
                for (int p = 0; p < (1 << 16); p++) {
                    if (p % 7 == 3) {
                        b.mark(p, 1);
                    }
                }
            });
            Future<?> f1 = pool.submit(() -> {
                for (int p = 0; p < (1 << 16); p++) {
                    if (p % 7 != 3) {
                        b.mark(p, 1);
                    }
                }
            });
            f0.get(30, TimeUnit.SECONDS);
            f1.get(30, TimeUnit.SECONDS);
        }
        assertEquals(1 << 16, b.count());
    }
}
