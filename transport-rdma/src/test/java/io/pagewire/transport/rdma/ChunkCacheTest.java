package io.pagewire.transport.rdma;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ChunkCacheTest {
    @Test
    void leastRecentlyUsedIdleChunkIsTheVictimAndBusyOnesNeverAre() {
        ChunkCache c = new ChunkCache(3);
        int a = c.reserve(0, 10);
        int b = c.reserve(0, 11);
        int d = c.reserve(1, 5);
        for (int s : new int[]{a, b, d}) {
            c.ready(s, 100 + s, null);
        }
        c.pin(a);          // a: most recent, busy
        c.pin(b);
        c.release(b);      // b: recent, idle
        assertEquals(d, c.victim(-1, 0, 0), "d is the least recently used idle chunk");
        assertEquals(b, c.victim(1, 0, 10), "d is excluded by range: next is b");
        c.pin(b);
        c.pin(d);
        assertEquals(-1, c.victim(-1, 0, 0), "every chunk busy");
        assertThrows(IllegalStateException.class, () -> c.reserve(2, 2), "full");
        c.release(a);
        assertThrows(IllegalStateException.class, () -> c.release(a), "released more often than pinned");
    }

    @Test
    void theIndexStaysCorrectUnderRandomInsertAndEvict() {
        ChunkCache c = new ChunkCache(64);
        Map<Long, Integer> model = new HashMap<>();
        Random r = new Random(1);
        for (int i = 0; i < 100_000; i++) {
            int region = r.nextInt(3);
            long chunk = r.nextInt(200);
            long key = ((long) region << 32) | chunk;
            int s = c.lookup(region, chunk);
            assertEquals(model.getOrDefault(key, -1), s, "lookup of " + region + "/" + chunk);
            if (s >= 0) {
                c.free(s);
                model.remove(key);
            } else if (c.hasFree()) {
                s = c.reserve(region, chunk);
                c.ready(s, 0, null);
                model.put(key, s);
            }
            assertEquals(model.size(), c.used());
        }
        assertTrue(c.used() > 0);
    }
}
