package io.pagewire.transport.spi.wire;

import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static io.pagewire.transport.spi.wire.Wire.U16;
import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;

/**
 * The HELLO payload: what the source proposes. The destination checks it against its own
 * layout and limits and answers HELLO_ACK or ERROR.
 *
 * <pre>
 *  0                               8               12      14      16
 *  +-------------------------------+---------------+-------+-------+
 *  |        session id (u64)       |  flags (u32)  |chan(16)|regs(16)|
 *  +---------------+---------------+---------------+-------+-------+
 *  | max payload   | heartbeat ms  | peer timeout  |                 16..27
 *  +---------------+---------------+---------------+
 *  then per region: name length (u16), name (UTF-8), size bytes (u64), page size (u32)
 *  flags: bit 0 = data digest on PAGES frames; bit 1 = shared channel (no urgent connection:
 *         urgent frames travel on background channel 0, flagged URGENT_LANE); bit 2 = shared memory
 *         (a MEMORY frame with file descriptors follows on this connection: unix sockets only);
 *         bit 3 = authenticated (AUTH frames follow; JOINs carry a MAC)
 * </pre>
 *
 * @param sessionId random id chosen by the source; JOIN frames repeat it
 * @param flags {@link #FLAG_DATA_DIGEST}, {@link #FLAG_SHARED_CHANNEL}, {@link #FLAG_SHARED_MEMORY}
 * @param channels number of background connections that will JOIN
 * @param maxPagePayload largest PAGES payload the source will send
 * @param heartbeatMs the source's heartbeat interval
 * @param peerTimeoutMs the source's peer timeout
 * @param regions the source's RAM layout
 */
public record Hello(long sessionId, int flags, int channels, int maxPagePayload, int heartbeatMs, int peerTimeoutMs,
                    List<RegionDescriptor> regions) {
    /** Data digest on PAGES frames. */
    public static final int FLAG_DATA_DIGEST = 1;
    /**
     * No urgent connection of its own: the connection this HELLO travels on is background
     * channel 0 and carries the urgent lane too, each urgent frame flagged
     * {@link FrameHeader#FLAG_URGENT_LANE}; channels 1..n-1 JOIN as usual.
     */
    public static final int FLAG_SHARED_CHANNEL = 2;
    /**
     * The source hands regions over instead of copying them: a {@link FrameType#MEMORY} frame with their file
     * descriptors follows this HELLO on the same connection (a transport that passes descriptors).
     */
    public static final int FLAG_SHARED_MEMORY = 4;
    /**
     * The source authenticates: AUTH frames follow this HELLO on the same connection (the kit's
     * {@code AuthExchange}), and every JOIN carries a MAC keyed from the session's key.
     */
    public static final int FLAG_AUTHENTICATED = 8;
    /**
     * Every frame after the handshake carries a MAC keyed from the session key (Aeron's {@code frame-mac=on});
     * only with {@link #FLAG_AUTHENTICATED}.
     */
    public static final int FLAG_FRAME_MAC = 16;
    private static final int KNOWN_FLAGS = FLAG_DATA_DIGEST | FLAG_SHARED_CHANNEL | FLAG_SHARED_MEMORY | FLAG_AUTHENTICATED | FLAG_FRAME_MAC;
    private static final int FIXED = 28;

    /** @return whether every frame carries a MAC ({@link #FLAG_FRAME_MAC}) */
    public boolean frameMac() {
        return (flags & FLAG_FRAME_MAC) != 0;
    }

    /** @return whether data digests were asked for */
    public boolean dataDigest() {
        return (flags & FLAG_DATA_DIGEST) != 0;
    }

    /** @return whether the urgent lane shares background channel 0 (no urgent connection of its own) */
    public boolean sharedChannel() {
        return (flags & FLAG_SHARED_CHANNEL) != 0;
    }

    /** @return whether a MEMORY frame with file descriptors follows (regions handed over, not copied) */
    public boolean sharedMemory() {
        return (flags & FLAG_SHARED_MEMORY) != 0;
    }

    /** @return whether the source authenticates (AUTH frames follow) */
    public boolean authenticated() {
        return (flags & FLAG_AUTHENTICATED) != 0;
    }

    /** @return the encoded length */
    public int encodedLength() {
        int n = FIXED;
        for (RegionDescriptor d : regions) {
            n += 2 + d.name().getBytes(StandardCharsets.UTF_8).length + 8 + 4;
        }
        return n;
    }

    /** Encodes into {@code buf} at 0; returns the length. */
    public int encode(MemorySegment buf) {
        buf.set(U64, 0, sessionId);
        buf.set(U32, 8, flags);
        buf.set(U16, 12, (short) channels);
        buf.set(U16, 14, (short) regions.size());
        buf.set(U32, 16, maxPagePayload);
        buf.set(U32, 20, heartbeatMs);
        buf.set(U32, 24, peerTimeoutMs);
        long off = FIXED;
        for (RegionDescriptor d : regions) {
            byte[] name = d.name().getBytes(StandardCharsets.UTF_8);
            buf.set(U16, off, (short) name.length);
            MemorySegment.copy(name, 0, buf, ValueLayout.JAVA_BYTE, off + 2, name.length);
            off += 2 + name.length;
            buf.set(U64, off, d.sizeBytes());
            buf.set(U32, off + 8, (int) d.pageSize());
            off += 12;
        }
        return (int) off;
    }

    /**
     * Decodes and validates a HELLO payload from an untrusted peer, for a transport that has no
     * shared channel (a HELLO asking for one is refused).
     *
     * @param buf the payload
     * @param length its length as the frame header stated (already at most {@link Wire#MAX_HELLO_BYTES})
     * @throws WireException when any field is out of bounds
     */
    public static Hello decode(MemorySegment buf, int length) {
        return decode(buf, length, false);
    }

    /**
     * Decodes and validates a HELLO payload from an untrusted peer.
     *
     * @param buf the payload
     * @param length its length as the frame header stated (already at most {@link Wire#MAX_HELLO_BYTES})
     * @param sharedChannelOffered whether this transport can run both lanes on one channel ({@link #FLAG_SHARED_CHANNEL})
     * @throws WireException when any field is out of bounds
     */
    public static Hello decode(MemorySegment buf, int length, boolean sharedChannelOffered) {
        if (length < FIXED) {
            throw new WireException("HELLO payload of " + length + " bytes is shorter than its fixed part (" + FIXED + ")");
        }
        long sessionId = buf.get(U64, 0);
        int flags = buf.get(U32, 8);
        int channels = Short.toUnsignedInt(buf.get(U16, 12));
        int regionCount = Short.toUnsignedInt(buf.get(U16, 14));
        int maxPayload = buf.get(U32, 16);
        int heartbeatMs = buf.get(U32, 20);
        int peerTimeoutMs = buf.get(U32, 24);
        if ((flags & ~KNOWN_FLAGS) != 0) {
            throw new WireException("HELLO: unknown flags 0x" + Integer.toHexString(flags));
        }
        if ((flags & FLAG_SHARED_CHANNEL) != 0 && !sharedChannelOffered) {
            throw new WireException("HELLO asks for a shared channel (flag 0x" + Integer.toHexString(FLAG_SHARED_CHANNEL)
                    + "), which this transport does not offer");
        }
        if (channels < 1 || channels > Wire.MAX_CHANNELS) {
            throw new WireException("HELLO: channel count " + channels + " outside 1.." + Wire.MAX_CHANNELS);
        }
        if (regionCount < 1 || regionCount > RamLayout.MAX_REGIONS) {
            throw new WireException("HELLO: region count " + regionCount + " outside 1.." + RamLayout.MAX_REGIONS);
        }
        if (maxPayload < (int) RegionDescriptor.MIN_PAGE_SIZE || maxPayload > Wire.MAX_FRAME_PAYLOAD) {
            throw new WireException("HELLO: max payload " + Integer.toUnsignedString(maxPayload) + " outside "
                    + RegionDescriptor.MIN_PAGE_SIZE + ".." + Wire.MAX_FRAME_PAYLOAD);
        }
        if (heartbeatMs < 1 || peerTimeoutMs < 2 || peerTimeoutMs > 3_600_000) {
            // u32 fields: shown as the source sent them (found by the hostile source: 2^32 - 1 was shown as -1)
            throw new WireException("HELLO: heartbeat " + Integer.toUnsignedString(heartbeatMs) + " ms / peer timeout "
                    + Integer.toUnsignedString(peerTimeoutMs) + " ms outside 1 ms .. 1 h");
        }
        List<RegionDescriptor> regions = new ArrayList<>(regionCount);
        long off = FIXED;
        for (int i = 0; i < regionCount; i++) {
            if (off + 2 > length) {
                throw new WireException("HELLO truncated in region " + i + " of " + regionCount);
            }
            int nameLen = Short.toUnsignedInt(buf.get(U16, off));
            if (nameLen < 1 || nameLen > RegionDescriptor.MAX_NAME_BYTES || off + 2 + nameLen + 12 > length) {
                throw new WireException("HELLO: region " + i + " name length " + nameLen + " outside 1.."
                        + RegionDescriptor.MAX_NAME_BYTES + " or past the payload end");
            }
            byte[] name = new byte[nameLen];
            MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, off + 2, name, 0, nameLen);
            off += 2 + nameLen;
            long size = buf.get(U64, off);
            long pageSize = Integer.toUnsignedLong(buf.get(U32, off + 8));
            off += 12;
            String text;
            try {
                text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(name)).toString();
            } catch (CharacterCodingException e) {
                throw new WireException("HELLO: region " + i + " name " + Wire.printable(MemorySegment.ofArray(name), nameLen)
                        + " is not valid UTF-8");
            }
            try {
                regions.add(new RegionDescriptor(text, size, pageSize));
            } catch (TransportException e) {
                throw new WireException("HELLO: region " + i + ": " + e.getMessage());
            }
        }
        if (off != length) {
            throw new WireException("HELLO: " + (length - off) + " unexpected bytes after the last region");
        }
        return new Hello(sessionId, flags, channels, maxPayload, heartbeatMs, peerTimeoutMs, List.copyOf(regions));
    }
}
