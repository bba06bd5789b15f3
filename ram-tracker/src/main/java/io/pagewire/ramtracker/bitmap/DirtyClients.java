package io.pagewire.ramtracker.bitmap;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Collections;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;

/**
 * One bitmap per enabled {@link DirtyClient} for a region, fed together: a dirty-log source
 * can report a page once (its collect re-protects the page) while every client still sees it.
 *
 * <p>Threading: as {@link DirtyBitmap}; marking through this sink is one marking thread at a
 * time, and each client takes its own bits from its own bitmap.
 */
public final class DirtyClients implements DirtySink {
    private final long pageCount;
    private final Map<DirtyClient, DirtyBitmap> bitmaps;
    private final DirtyBitmap[] array;

    /**
     * @param pageCount pages per bitmap
     * @param clients the clients to keep a bitmap for (at least one)
     * @param arena where the bitmaps live
     */
    public DirtyClients(long pageCount, Set<DirtyClient> clients, Arena arena) {
        if (clients.isEmpty()) {
            throw new IllegalArgumentException("at least one dirty client is needed");
        }
        this.pageCount = pageCount;
        EnumMap<DirtyClient, DirtyBitmap> map = new EnumMap<>(DirtyClient.class);
        for (DirtyClient c : EnumSet.copyOf(clients)) {
            map.put(c, DirtyBitmap.allocate(pageCount, arena));
        }
        this.bitmaps = Collections.unmodifiableMap(map);
        this.array = map.values().toArray(new DirtyBitmap[0]);
    }

    /** @return the enabled clients */
    public Set<DirtyClient> clients() {
        return bitmaps.keySet();
    }

    /**
     * @param client an enabled client
     * @return its bitmap
     */
    public DirtyBitmap bitmap(DirtyClient client) {
        DirtyBitmap b = bitmaps.get(client);
        if (b == null) {
            throw new IllegalArgumentException("dirty client " + client + " is not enabled; enabled: " + bitmaps.keySet());
        }
        return b;
    }

    @Override
    public long pageCount() {
        return pageCount;
    }

    @Override
    public void markRange(long firstPage, long count) {
        for (DirtyBitmap b : array) {
            b.markRange(firstPage, count);
        }
    }

    /** @return pages newly dirty in the first enabled client (in {@link DirtyClient} order) */
    @Override
    public long syncFrom(MemorySegment log, long logFirstBit, long firstPage, long count) {
        long first = array[0].syncFrom(log, logFirstBit, firstPage, count);
        for (int i = 1; i < array.length; i++) {
            array[i].syncFrom(log, logFirstBit, firstPage, count);
        }
        return first;
    }
}
