package io.pagewire.ramtracker.dirty;

import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.bitmap.DirtySink;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A dirty log handed in by a VMM in {@code KVM_GET_DIRTY_LOG} format: for each memory slot, one
 * 64-bit little-endian word per 64 pages of the slot. A slot starts at a region page that need
 * not be a multiple of 64 (QEMU's VGA RAM is the classic case), so merging a slot into a
 * region bitmap takes the shifting path of {@link DirtyBitmap#syncFrom} there and the whole-word
 * path everywhere else.
 *
 * <p>The VMM thread calls {@link #feed} (any thread, any time); the migration thread calls
 * {@link #collect}, which takes what was fed and merges it into the sink. Between the two sits a
 * pending bitmap per slot, in the slot's own layout: feeding ORs words into it atomically,
 * collecting takes words out of it atomically, so a page fed while a collect runs is collected
 * by that collect or the next, never lost. Memory: one bit per slot page plus a 64 KiB buffer.
 */
public final class ExternalDirtyLog implements DirtyLogSource {

    private static final ValueLayout.OfLong LOG_WORD = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Words per merge step: 8192 words = 64 KiB = 524288 pages. */
    static final int CHUNK_WORDS = 8192;

    private record Slot(long firstPage, long pageCount, DirtyBitmap pending) {
    }

    private final String name;
    private final long pageCount;
    private final Arena arena;
    private final List<Slot> slots = new ArrayList<>();
    private volatile Slot[] slotArray = new Slot[0];
    private final MemorySegment chunk;
    private volatile boolean tracking;
    private boolean closed;

    /**
     * @param name what the log covers, for messages ("region 'pc.ram'")
     * @param pageCount pages of the region the slots lie in
     * @param arena where the pending bitmaps and the merge buffer live
     */
    public ExternalDirtyLog(String name, long pageCount, Arena arena) {
        this.name = name;
        this.pageCount = pageCount;
        this.arena = arena;
        this.chunk = arena.allocate(CHUNK_WORDS * 8L, 64);
    }

    /**
     * Declares a memory slot.
     *
     * @param firstPage the region page where the slot starts (any alignment)
     * @param slotPages pages in the slot
     * @return the slot id for {@link #feed}
     */
    public synchronized int addSlot(long firstPage, long slotPages) {
        if (firstPage < 0 || slotPages <= 0 || firstPage > pageCount - slotPages) {
            throw new IndexOutOfBoundsException(name + ": slot pages [" + firstPage + ", +" + slotPages + ") outside [0, " + pageCount + ")");
        }
        for (Slot s : slots) {
            if (firstPage < s.firstPage + s.pageCount && s.firstPage < firstPage + slotPages) {
                throw new IllegalArgumentException(name + ": slot [" + firstPage + ", +" + slotPages + ") overlaps slot [" + s.firstPage + ", +"
                        + s.pageCount + ")");
            }
        }
        slots.add(new Slot(firstPage, slotPages, DirtyBitmap.allocate(slotPages, arena)));
        // Publish a new array (volatile write): feeders on other threads see complete slots.
        slotArray = slots.toArray(new Slot[0]);
        return slots.size() - 1;
    }

    /**
     * Hands in a slot's dirty log (any thread). Ignored while not tracking.
     *
     * @param slot slot id from {@link #addSlot}
     * @param log the bitmap, {@code KVM_GET_DIRTY_LOG} format: at least one 64-bit word per 64
     *            pages of the slot; bits past the slot's last page are ignored
     * @return false when ignored because tracking is off
     */
    public boolean feed(int slot, MemorySegment log) {
        Slot[] array = slotArray;
        if (slot < 0 || slot >= array.length) {
            throw new IndexOutOfBoundsException(name + ": no slot " + slot + " (" + array.length + " declared)");
        }
        Slot s = array[slot];
        long words = DirtyBitmap.wordsFor(s.pageCount);
        if (log.byteSize() < words * 8) {
            throw new IllegalArgumentException(name + ": dirty log for slot " + slot + " has " + log.byteSize() + " bytes; its " + s.pageCount
                    + " pages need " + words * 8 + " (one 64-bit word per 64 pages)");
        }
        if (!tracking) {
            return false;
        }
        long lastMask = -1L >>> (63 - ((s.pageCount - 1) & 63));
        for (long i = 0; i < words; i++) {
            long w = log.getAtIndex(LOG_WORD, i);
            if (i == words - 1) {
                w &= lastMask;
            }
            if (w != 0) {
                s.pending.orWordAtomic(i, w);
            }
        }
        return true;
    }

    @Override
    public String description() {
        return "external dirty log of " + name;
    }

    @Override
    public long pageCount() {
        return pageCount;
    }

    @Override
    public synchronized void start() {
        checkOpen();
        if (tracking) {
            throw new IllegalStateException(description() + " is already tracking");
        }
        for (Slot s : slots) {
            s.pending.clearAll();
        }
        // Volatile write after the clears: a feeder that sees tracking == true ORs into clean bitmaps.
        tracking = true;
    }

    @Override
    public boolean isTracking() {
        return tracking;
    }

    @Override
    public synchronized long collect(DirtySink sink, long firstPage, long count) {
        checkOpen();
        if (!tracking) {
            throw new IllegalStateException(description() + " is not tracking: call start() first");
        }
        if (firstPage < 0 || count < 0 || firstPage > pageCount - count) {
            throw new IndexOutOfBoundsException(name + ": pages [" + firstPage + ", +" + count + ") outside [0, " + pageCount + ")");
        }
        long end = firstPage + count;
        long reported = 0;
        for (Slot s : slots) {
            long from = Math.max(firstPage, s.firstPage);
            long to = Math.min(end, s.firstPage + s.pageCount);
            if (from < to) {
                reported += collectSlot(s, from - s.firstPage, to - s.firstPage, sink);
            }
        }
        return reported;
    }

    /**
     * Takes slot bits {@code [fromBit, toBit)} out of the pending bitmap a chunk at a time and
     * merges each chunk into the sink, bit {@code b} of the slot landing on region page
     * {@code slot.firstPage + b}.
     */
    private long collectSlot(Slot s, long fromBit, long toBit, DirtySink sink) {
        long reported = 0;
        long firstWord = fromBit >>> 6;
        long lastWord = (toBit - 1) >>> 6;
        for (long w0 = firstWord; w0 <= lastWord; w0 += CHUNK_WORDS) {
            long w1 = Math.min(lastWord, w0 + CHUNK_WORDS - 1);
            for (long w = w0; w <= w1; w++) {
                long mask = (w == firstWord ? -1L << fromBit : -1L) & (w == lastWord ? -1L >>> (63 - ((toBit - 1) & 63)) : -1L);
                long taken = s.pending.take(w, mask);
                chunk.setAtIndex(LOG_WORD, w - w0, taken);
                reported += Long.bitCount(taken);
            }
            long chunkFromBit = Math.max(fromBit, w0 << 6);
            long chunkToBit = Math.min(toBit, (w1 + 1) << 6);
            sink.syncFrom(chunk, chunkFromBit - (w0 << 6), s.firstPage + chunkFromBit, chunkToBit - chunkFromBit);
        }
        return reported;
    }

    @Override
    public synchronized void stop() {
        tracking = false;
    }

    @Override
    public synchronized void close() {
        tracking = false;
        closed = true;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException(description() + " is closed");
        }
    }

    @Override
    public String toString() {
        return description();
    }
}
