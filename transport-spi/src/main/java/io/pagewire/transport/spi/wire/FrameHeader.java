package io.pagewire.transport.spi.wire;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

import static io.pagewire.transport.spi.wire.Wire.U16;
import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;

/**
 * Flyweight over one 32-byte frame header in native memory. Reused for every frame of a
 * stream: no allocation per frame. Not thread-safe; one per reading or writing thread.
 *
 * <pre>
 *  0               2               4                               8
 *  +---------------+---------------+-------------------------------+
 *  |  type (u16)   |  flags (u16)  |        region id (u32)        |
 *  +---------------+---------------+-------------------------------+
 *  |      first (u64): first page, round number or clock           |  8
 *  +---------------------------------------------------------------+
 *  |      count (u64): page count, or pages sent (COMPLETE)        | 16
 *  +-------------------------------+-------------------------------+
 *  |    payload length (u32)       | header CRC32C (u32) of 0..27  | 24
 *  +-------------------------------+-------------------------------+
 *  then payload length bytes, then, when flag DATA_DIGEST is set,
 *  a u32 CRC32C of the payload.
 *  flags: bit 0 DATA_DIGEST; bit 1 URGENT_LANE (only on a channel shared by both lanes,
 *  negotiated in the HELLO: the frame belongs to the urgent lane)
 * </pre>
 */
public final class FrameHeader {
    /** Header length in bytes. */
    public static final int LENGTH = 32;
    /** Flag: a 4-byte CRC32C of the payload follows it. */
    public static final int FLAG_DATA_DIGEST = 1;
    /**
     * Flag: the frame belongs to the urgent lane although it travels on a background channel.
     * Only legal when the HELLO negotiated a shared channel ({@link Hello#FLAG_SHARED_CHANNEL}).
     */
    public static final int FLAG_URGENT_LANE = 2;
    /** All flags this version knows. */
    public static final int KNOWN_FLAGS = FLAG_DATA_DIGEST | FLAG_URGENT_LANE;

    private final MemorySegment buf;
    private final ByteBuffer crcView;
    private final CRC32C crc = new CRC32C();

    private int type;
    private int flags;
    private int region;
    private long first;
    private long count;
    private int payloadLength;

    /** A header backed by fresh native memory from {@code arena}. */
    public FrameHeader(Arena arena) {
        this(arena.allocate(LENGTH, 8));
    }

    /** A header over the given 32 bytes. */
    public FrameHeader(MemorySegment buf) {
        if (buf.byteSize() < LENGTH) {
            throw new IllegalArgumentException("header buffer " + buf.byteSize() + " < " + LENGTH);
        }
        this.buf = buf.asSlice(0, LENGTH);
        this.crcView = this.buf.asSlice(0, 28).asByteBuffer();
    }

    /** @return the 32 bytes */
    public MemorySegment segment() {
        return buf;
    }

    /**
     * Encodes a header, CRC included.
     *
     * @return this
     */
    public FrameHeader encode(int type, int flags, int region, long first, long count, int payloadLength) {
        buf.set(U16, 0, (short) type);
        buf.set(U16, 2, (short) flags);
        buf.set(U32, 4, region);
        buf.set(U64, 8, first);
        buf.set(U64, 16, count);
        buf.set(U32, 24, payloadLength);
        buf.set(U32, 28, headerCrc());
        this.type = type;
        this.flags = flags;
        this.region = region;
        this.first = first;
        this.count = count;
        this.payloadLength = payloadLength;
        return this;
    }

    /**
     * Decodes the header in the buffer, checking its CRC. Field meaning is checked by
     * {@link FrameValidator}.
     *
     * @return this
     * @throws WireException on a CRC mismatch
     */
    public FrameHeader decode() {
        int expected = buf.get(U32, 28);
        int actual = headerCrc();
        if (expected != actual) {
            throw new WireException(String.format("frame header CRC32C mismatch: header says 0x%08x, computed 0x%08x"
                    + " (corrupted stream or not a pagewire frame; first bytes %s)", expected, actual, Wire.printable(buf, 16)));
        }
        type = Short.toUnsignedInt(buf.get(U16, 0));
        flags = Short.toUnsignedInt(buf.get(U16, 2));
        region = buf.get(U32, 4);
        first = buf.get(U64, 8);
        count = buf.get(U64, 16);
        payloadLength = buf.get(U32, 24);
        return this;
    }

    private int headerCrc() {
        crc.reset();
        crc.update(crcView.clear());
        return (int) crc.getValue();
    }

    public int type() {
        return type;
    }

    public int flags() {
        return flags;
    }

    /** @return region id as sent (unsigned; validated by {@link FrameValidator}) */
    public int region() {
        return region;
    }

    public long first() {
        return first;
    }

    public long count() {
        return count;
    }

    /** @return payload length as sent (unsigned; validated by {@link FrameValidator}) */
    public int payloadLength() {
        return payloadLength;
    }

    /** @return true when a data digest follows the payload */
    public boolean hasDataDigest() {
        return (flags & FLAG_DATA_DIGEST) != 0;
    }

    /** @return true when the frame belongs to the urgent lane of a shared channel */
    public boolean isUrgentLane() {
        return (flags & FLAG_URGENT_LANE) != 0;
    }

    @Override
    public String toString() {
        return FrameType.name(type) + "{flags=" + flags + ", region=" + Integer.toUnsignedString(region) + ", first=" + first
                + ", count=" + count + ", payload=" + Integer.toUnsignedString(payloadLength) + "}";
    }
}
