package io.pagewire.transport.spi.wire;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

/**
 * Constants and small helpers of the pagewire byte-stream wire format, version 1.
 * {@code docs/wire-protocol.md} is the reference; all integers are big-endian.
 *
 * <pre>
 * Every connection starts with a 16-byte preamble, then frames:
 *  0                   8                  12                  16
 *  +-------------------+-------------------+-------------------+
 *  | magic "PAGEWIRE"  | version (u32) = 1 | reserved (u32) =0 |
 *  +-------------------+-------------------+-------------------+
 * </pre>
 */
public final class Wire {
    private Wire() {
    }

    /** "PAGEWIRE" in ASCII, as a big-endian long. */
    public static final long MAGIC = 0x5041474557495245L;
    /** The wire version this code speaks. */
    public static final int VERSION = 1;
    /** Preamble length. */
    public static final int PREAMBLE_LENGTH = 16;
    /** Largest frame payload any peer may announce (page batches). */
    public static final int MAX_FRAME_PAYLOAD = 16 << 20;
    /** Default largest page-batch payload. */
    public static final int DEFAULT_FRAME_PAYLOAD = 256 << 10;
    /** Largest ERROR payload (UTF-8 text). */
    public static final int MAX_ERROR_BYTES = 4096;
    /** Largest CONTROL payload. */
    public static final int MAX_CONTROL_BYTES = 64 * 1024;
    /** Largest HELLO payload. */
    public static final int MAX_HELLO_BYTES = 1 << 20;
    /** Length of the data digest trailer. */
    public static final int DIGEST_LENGTH = 4;
    /** Most pages in one PAGE_LIST frame (also bounded by the max payload). */
    public static final int MAX_LIST_PAGES = 1024;
    /** Most background channels. */
    public static final int MAX_CHANNELS = 64;

    /** Big-endian unaligned layouts. */
    public static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** Writes the preamble at offset 0 of {@code buf}. */
    public static void writePreamble(MemorySegment buf, int version) {
        buf.set(U64, 0, MAGIC);
        buf.set(U32, 8, version);
        buf.set(U32, 12, 0);
    }

    /**
     * Checks a received preamble.
     *
     * @return the peer's version (a u32: compare with {@link Integer#toUnsignedLong})
     * @throws WireException when the magic is wrong (not a pagewire peer) or the reserved field is not 0
     */
    public static int checkPreamble(MemorySegment buf) {
        long magic = buf.get(U64, 0);
        if (magic != MAGIC) {
            throw new WireException("not a pagewire peer: the stream starts with " + printable(buf, 8)
                    + " instead of the magic 'PAGEWIRE'");
        }
        int reserved = buf.get(U32, 12);
        if (reserved != 0) {
            throw new WireException("invalid preamble: reserved field 0x" + Integer.toHexString(reserved) + " must be 0");
        }
        return buf.get(U32, 8);
    }

    /** Renders bytes as quoted ASCII with escapes, for error messages. */
    public static String printable(MemorySegment buf, int n) {
        StringBuilder sb = new StringBuilder("'");
        for (int i = 0; i < n && i < buf.byteSize(); i++) {
            int b = buf.get(ValueLayout.JAVA_BYTE, i) & 0xff;
            if (b >= 0x20 && b < 0x7f && b != '\'' && b != '\\') {
                sb.append((char) b);
            } else {
                sb.append(String.format("\\x%02x", b));
            }
        }
        return sb.append('\'').toString();
    }

    /**
     * Adds a native segment range to a running CRC32C (no reset).
     */
    public static void crc32cUpdate(CRC32C crc, MemorySegment seg, long offset, long length) {
        long done = 0;
        while (done < length) {
            long n = Math.min(length - done, 1L << 30);
            crc.update(seg.asSlice(offset + done, n).asByteBuffer());
            done += n;
        }
    }

    /**
     * CRC32C of a native segment range (hardware-accelerated by the JDK).
     *
     * @param crc a reusable CRC32C; reset here
     */
    public static int crc32c(CRC32C crc, MemorySegment seg, long offset, long length) {
        crc.reset();
        // asByteBuffer is limited to 2 GiB; frames are far smaller, but stay general.
        long done = 0;
        while (done < length) {
            long n = Math.min(length - done, 1L << 30);
            crc.update(seg.asSlice(offset + done, n).asByteBuffer());
            done += n;
        }
        return (int) crc.getValue();
    }
}
