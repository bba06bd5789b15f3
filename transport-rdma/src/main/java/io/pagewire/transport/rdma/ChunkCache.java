package io.pagewire.transport.rdma;

import java.util.Arrays;

/**
 * A bounded table of registered chunks, keyed by (region, chunk index), with least-recently-used
 * eviction. A chunk with RDMA writes in flight ({@link #pin} without {@link #release}) is never
 * chosen as a victim. Memory is bounded by the capacity, not by the RAM size: the key index is an
 * open-addressing hash table of twice the capacity.
 *
 * <p>Not thread-safe: the owner guards it with its lock. Nothing is allocated after construction.
 */
final class ChunkCache {
    static final int FREE = 0;
    static final int PENDING = 1;
    static final int READY = 2;

    private final int capacity;
    private final int[] state;
    private final int[] region;
    private final long[] chunk;
    private final int[] inflight;
    private final long[] lastUse;
    private final int[] key;
    private final Object[] handle;
    private final int[] freeSlots;
    private int freeCount;
    private long clock;
    // open addressing: long key -> slot
    private final long[] mapKeys;
    private final int[] mapSlots;
    private final int mask;

    ChunkCache(int capacity) {
        this.capacity = capacity;
        state = new int[capacity];
        region = new int[capacity];
        chunk = new long[capacity];
        inflight = new int[capacity];
        lastUse = new long[capacity];
        key = new int[capacity];
        handle = new Object[capacity];
        freeSlots = new int[capacity];
        for (int i = 0; i < capacity; i++) {
            freeSlots[i] = capacity - 1 - i;
        }
        freeCount = capacity;
        int size = Integer.highestOneBit(Math.max(4, capacity * 2 - 1)) << 1;
        mapKeys = new long[size];
        mapSlots = new int[size];
        Arrays.fill(mapSlots, -1);
        mask = size - 1;
    }

    int capacity() {
        return capacity;
    }

    /** @return chunks registered or being registered */
    int used() {
        return capacity - freeCount;
    }

    private static long k(int r, long c) {
        return ((long) r << 44) ^ c;
    }

    private static int hash(long v) {
        long h = v * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 32));
    }

    /** @return the slot of a chunk, or -1 */
    int lookup(int r, long c) {
        long kk = k(r, c);
        int i = hash(kk) & mask;
        while (mapSlots[i] >= 0) {
            if (mapKeys[i] == kk) {
                return mapSlots[i];
            }
            i = (i + 1) & mask;
        }
        return -1;
    }

    private void mapPut(long kk, int slot) {
        int i = hash(kk) & mask;
        while (mapSlots[i] >= 0) {
            i = (i + 1) & mask;
        }
        mapKeys[i] = kk;
        mapSlots[i] = slot;
    }

    private void mapRemove(long kk) {
        int i = hash(kk) & mask;
        while (mapSlots[i] >= 0 && mapKeys[i] != kk) {
            i = (i + 1) & mask;
        }
        if (mapSlots[i] < 0) {
            return;
        }
        // Backward-shift deletion keeps every probe chain intact.
        int j = i;
        while (true) {
            j = (j + 1) & mask;
            if (mapSlots[j] < 0) {
                break;
            }
            int home = hash(mapKeys[j]) & mask;
            boolean between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
            if (!between) {
                mapKeys[i] = mapKeys[j];
                mapSlots[i] = mapSlots[j];
                i = j;
            }
        }
        mapSlots[i] = -1;
    }

    int state(int slot) {
        return state[slot];
    }

    int region(int slot) {
        return region[slot];
    }

    long chunk(int slot) {
        return chunk[slot];
    }

    int key(int slot) {
        return key[slot];
    }

    Object handle(int slot) {
        return handle[slot];
    }

    boolean hasFree() {
        return freeCount > 0;
    }

    /** Takes a free slot for a chunk, PENDING until {@link #ready}. */
    int reserve(int r, long c) {
        if (freeCount == 0) {
            throw new IllegalStateException("registration cache full");
        }
        int s = freeSlots[--freeCount];
        state[s] = PENDING;
        region[s] = r;
        chunk[s] = c;
        inflight[s] = 0;
        lastUse[s] = ++clock;
        key[s] = 0;
        handle[s] = null;
        mapPut(k(r, c), s);
        return s;
    }

    void ready(int slot, int keyValue, Object h) {
        state[slot] = READY;
        key[slot] = keyValue;
        handle[slot] = h;
    }

    /** Drops a slot (an eviction, or a registration that failed). */
    void free(int slot) {
        if (state[slot] == FREE) {
            return;
        }
        mapRemove(k(region[slot], chunk[slot]));
        state[slot] = FREE;
        handle[slot] = null;
        freeSlots[freeCount++] = slot;
    }

    /**
     * Picks the least recently used READY chunk with nothing in flight, outside region {@code r}'s
     * chunks [{@code from}, {@code to}).
     *
     * @return the slot, or -1 when every chunk is busy
     */
    int victim(int r, long from, long to) {
        int best = -1;
        long bestUse = Long.MAX_VALUE;
        for (int s = 0; s < capacity; s++) {
            if (state[s] == READY && inflight[s] == 0 && lastUse[s] < bestUse && !(region[s] == r && chunk[s] >= from && chunk[s] < to)) {
                best = s;
                bestUse = lastUse[s];
            }
        }
        return best;
    }

    /** One more RDMA write in flight through this chunk. */
    void pin(int slot) {
        inflight[slot]++;
        lastUse[slot] = ++clock;
    }

    /** The write completed. */
    void release(int slot) {
        if (inflight[slot] <= 0) {
            throw new IllegalStateException("registration cache slot " + slot + " released more often than pinned");
        }
        inflight[slot]--;
    }

    int inflight(int slot) {
        return inflight[slot];
    }
}
