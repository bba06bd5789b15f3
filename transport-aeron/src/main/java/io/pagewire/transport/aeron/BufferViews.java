package io.pagewire.transport.aeron;

import org.agrona.DirectBuffer;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/**
 * Views of Aeron's term buffers as {@link MemorySegment}s (for bounds-checked copies to and from guest RAM) and as
 * {@link ByteBuffer}s (for the JDK's intrinsic CRC32C), made once per term buffer and cached, so the data path
 * allocates nothing per message.
 *
 * <p>Aeron hands out term buffers as {@code UnsafeBuffer}s over slices of the memory-mapped log; a fragment or a
 * claim is an index range of one of them. The cache is keyed by the identity of the underlying {@link ByteBuffer}
 * (three per publication or image). Not thread-safe: one per thread.
 */
final class BufferViews {
    private static final int SLOTS = 8;
    private final ByteBuffer[] keys = new ByteBuffer[SLOTS];
    private final ByteBuffer[] dups = new ByteBuffer[SLOTS];
    private final MemorySegment[] segments = new MemorySegment[SLOTS];
    private final long[] bases = new long[SLOTS];
    private int last = -1;
    private int victim;

    private int slot(DirectBuffer buffer) {
        ByteBuffer bb = buffer.byteBuffer();
        if (last >= 0 && keys[last] == bb) {
            return last;
        }
        if (bb == null || !bb.isDirect()) {
            throw new IllegalStateException("an Aeron buffer without a direct ByteBuffer behind it: " + buffer);
        }
        for (int i = 0; i < SLOTS; i++) {
            if (keys[i] == bb) {
                last = i;
                return i;
            }
        }
        int i = victim;
        victim = (victim + 1) % SLOTS;
        ByteBuffer dup = bb.duplicate().clear();
        MemorySegment seg = MemorySegment.ofBuffer(dup);
        keys[i] = bb;
        dups[i] = dup;
        segments[i] = seg;
        bases[i] = seg.address();
        last = i;
        return i;
    }

    /** @return a segment over the whole buffer behind {@code buffer}; index it with {@link #offset} */
    MemorySegment segment(DirectBuffer buffer) {
        return segments[slot(buffer)];
    }

    /** @return the offset in {@link #segment} of {@code buffer}'s index {@code index} */
    long offset(DirectBuffer buffer, int index) {
        return buffer.addressOffset() + index - bases[slot(buffer)];
    }

    /** Adds {@code buffer[index, index + length)} to a running CRC32C. */
    void crc(CRC32C crc, DirectBuffer buffer, int index, int length) {
        int s = slot(buffer);
        int from = (int) (buffer.addressOffset() + index - bases[s]);
        ByteBuffer dup = dups[s];
        dup.limit(dup.capacity()).position(from).limit(from + length);
        crc.update(dup);
    }

    /** Forgets every view (the buffers they cover are about to be unmapped). */
    void clear() {
        java.util.Arrays.fill(keys, null);
        java.util.Arrays.fill(dups, null);
        java.util.Arrays.fill(segments, null);
        last = -1;
    }
}
