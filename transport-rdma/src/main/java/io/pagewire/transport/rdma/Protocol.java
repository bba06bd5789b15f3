package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;

/**
 * The RDMA message layer ({@code docs/rdma.md} is the reference). Page data never travels in
 * messages: it is placed by RDMA WRITE; messages say what landed.
 *
 * <pre>
 * Every SEND carries one message:
 *  0               4               8
 *  +---------------+---------------+
 *  | acked (u32)   | staged (u32)  |   envelope: cumulative counts, modulo 2^32, of the peer's
 *  +---------------+---------------+   messages whose receive buffers were posted again (credits)
 *  then frames, back to back:          and of staging slots released (placer regions)
 *  +---------------------------------------------------------------+
 *  | 32-byte pagewire frame header (wire version 1, CRC32C)        |
 *  +---------------------------------------------------------------+
 *  | inline payload: CONTROL, ERROR, HELLO and RDMA_* frames only   |
 *  | PAGES: no payload (the pages were RDMA-written before this     |
 *  |        SEND on the same queue pair); with DATA_DIGEST a u32    |
 *  |        CRC32C of the pages as placed follows the header        |
 *  +---------------------------------------------------------------+
 * The first message on each queue pair in each direction is not counted against credits and
 * lands in a handshake buffer; the source's first urgent message is envelope, preamble, HELLO,
 * RDMA_SETUP; its first background message is envelope, preamble, JOIN. The destination answers
 * envelope, preamble, HELLO_ACK, RDMA_REGIONS (or envelope, preamble, ERROR).
 * </pre>
 *
 * RDMA frame types (numbers above every wire-version-1 frame type):
 * <pre>
 *  RDMA_SETUP      0x101 S->D urgent, in the first message: payload rx depth (u32), rx bytes (u32), 0 (u32)
 *  RDMA_REGIONS    0x102 D->S urgent, in the answer: where and how destination RAM is registered
 *  RDMA_REGISTER   0x103 S->D any: register chunks [first, first+count) of region; payload: victims to
 *                        deregister first, each region (u32), chunk (u64)
 *  RDMA_REGISTERED 0x104 D->S same queue pair: region, first, count; payload count x rkey (u32)
 *  RDMA_ROUND_ACK  0x105 D->S background: first = round; onRoundEnd has returned
 * </pre>
 */
final class Protocol {
    private Protocol() {
    }

    /** Envelope length. */
    static final int ENVELOPE = 8;
    /** Receive buffer size, the same on both sides: the largest message. */
    static final int RX_BYTES = 68 * 1024;
    /** Room for the payload of a HELLO or RDMA_REGIONS in a first message (preamble, two frame headers, the setup). */
    static final int MAX_HANDSHAKE_PAYLOAD = RX_BYTES - ENVELOPE - Wire.PREAMBLE_LENGTH - 2 * FrameHeader.LENGTH - 16;
    /** Pin-all registers a region in pieces of this size (DiSNi's int length). */
    static final long PIN_PIECE_BYTES = 1L << 30;
    /** Most work requests in one message: RDMA WRITEs and the SEND. */
    static final int MAX_WRS = 64;
    /** Most chunks one RDMA_REGISTER names. */
    static final int MAX_REGISTER_CHUNKS = 64;
    /** Most victims one RDMA_REGISTER names. */
    static final int MAX_VICTIMS = 64;
    /** Chunks registered ahead of the one needed, when the cache has room (sequential rounds). */
    static final int REGISTER_AHEAD = 8;
    /** Staging slots per queue pair for regions with a placer. */
    static final int STAGING_SLOTS = 8;

    /** "PWHL": the connect request of an urgent queue pair names the session its HELLO will open. */
    static final int HELLO_REQUEST_MAGIC = 0x5057484c;
    /** "PWJN": the connect request of a background queue pair names the session it will JOIN. */
    static final int JOIN_REQUEST_MAGIC = 0x50574a4e;
    /** Private data of a source's connect request: magic (u32), session id (u64). */
    static final int CONNECT_REQUEST_LENGTH = 12;

    /**
     * What a source's connect request says in its private data: the session its queue pair belongs to.
     *
     * @param urgent true for the urgent queue pair (its HELLO opens the session), false for a background one
     */
    record ConnectRequest(boolean urgent, long sessionId) {
        /** @return the private data */
        byte[] encode() {
            byte[] b = new byte[CONNECT_REQUEST_LENGTH];
            MemorySegment m = MemorySegment.ofArray(b);
            m.set(U32, 0, urgent ? HELLO_REQUEST_MAGIC : JOIN_REQUEST_MAGIC);
            m.set(U64, 4, sessionId);
            return b;
        }

        /**
         * @param privateData a connect request's private data (trailing bytes, e.g. the connection
         *        manager's zero padding, are ignored)
         * @return what it names, or null when it names no session
         */
        static ConnectRequest decode(byte[] privateData) {
            if (privateData.length < CONNECT_REQUEST_LENGTH) {
                return null;
            }
            MemorySegment m = MemorySegment.ofArray(privateData);
            int magic = m.get(U32, 0);
            return magic == HELLO_REQUEST_MAGIC || magic == JOIN_REQUEST_MAGIC ? new ConnectRequest(magic == HELLO_REQUEST_MAGIC, m.get(U64, 4)) : null;
        }
    }

    /** @return the private data of a background queue pair's connect request for {@code sessionId} */
    static byte[] joinRequest(long sessionId) {
        return new ConnectRequest(false, sessionId).encode();
    }

    static final int RDMA_SETUP = 0x101;
    static final int RDMA_REGIONS = 0x102;
    static final int RDMA_REGISTER = 0x103;
    static final int RDMA_REGISTERED = 0x104;
    static final int RDMA_ROUND_ACK = 0x105;

    /** Region modes in RDMA_REGIONS. */
    static final int MODE_ON_DEMAND = 0;
    static final int MODE_PINNED = 1;
    static final int MODE_STAGED = 2;

    static String name(int type) {
        return switch (type) {
            case RDMA_SETUP -> "RDMA_SETUP";
            case RDMA_REGIONS -> "RDMA_REGIONS";
            case RDMA_REGISTER -> "RDMA_REGISTER";
            case RDMA_REGISTERED -> "RDMA_REGISTERED";
            case RDMA_ROUND_ACK -> "RDMA_ROUND_ACK";
            default -> FrameType.name(type);
        };
    }

    /** @return true for frames handled by the transport itself, never queued behind application callbacks */
    static boolean isInternal(int type) {
        return type == RDMA_REGISTER || type == RDMA_REGISTERED || type == RDMA_ROUND_ACK || type == FrameType.HEARTBEAT
                || type == FrameType.ERROR;
    }

    /** @return pieces of a pinned region */
    static int pieces(long sizeBytes) {
        return (int) ((sizeBytes + PIN_PIECE_BYTES - 1) / PIN_PIECE_BYTES);
    }

    // ================================================================== RDMA_SETUP

    /** The source's receive side, sent with HELLO. */
    record Setup(int rxDepth) {
        static final int LENGTH = 12;

        void encode(MemorySegment buf, long off) {
            buf.set(U32, off, rxDepth);
            buf.set(U32, off + 4, RX_BYTES);
            buf.set(U32, off + 8, 0);
        }

        static Setup decode(MemorySegment buf, long off, long length) {
            if (length != LENGTH) {
                throw new WireException("RDMA_SETUP payload of " + length + " bytes; expected " + LENGTH);
            }
            int depth = buf.get(U32, off);
            int rxBytes = buf.get(U32, off + 4);
            int reserved = buf.get(U32, off + 8);
            if (depth < RdmaOptions.MIN_QUEUE_DEPTH || depth > RdmaOptions.MAX_QUEUE_DEPTH) {
                throw new WireException("RDMA_SETUP: receive depth " + Integer.toUnsignedString(depth) + " outside "
                        + RdmaOptions.MIN_QUEUE_DEPTH + ".." + RdmaOptions.MAX_QUEUE_DEPTH);
            }
            if (rxBytes != RX_BYTES || reserved != 0) {
                throw new WireException("RDMA_SETUP: receive buffers of " + Integer.toUnsignedString(rxBytes) + " bytes; this side uses "
                        + RX_BYTES + " (an incompatible RDMA message layer)");
            }
            return new Setup(depth);
        }
    }

    // ================================================================== RDMA_REGIONS

    /** Where one destination region is registered. */
    record RegionKeys(int mode, long base, int[] rkeys) {
    }

    /**
     * The destination's registration and receive parameters.
     *
     * <pre>
     *  rx depth (u32) | rx bytes (u32) | chunk bytes (u32) | registration cache chunks (u32)
     *  staging slots (u32) | staging slot bytes (u32)
     *  background staging address (u64) | rkey (u32) | 0 (u32)
     *  urgent staging address (u64)     | rkey (u32) | 0 (u32)
     *  region count (u32), then per region: mode (u32) | key count (u32) | base address (u64) | key count x rkey (u32)
     *    mode 0 on demand: no keys (RDMA_REGISTER per chunk); 1 pinned: one key per 1 GiB piece; 2 staged: no keys
     * </pre>
     */
    record Regions(int rxDepth, int chunkBytes, int cacheChunks, int stagingSlots, int stagingSlotBytes,
                   long bgStagingAddress, int bgStagingRkey, long urgentStagingAddress, int urgentStagingRkey,
                   List<RegionKeys> regions) {
        static final int FIXED = 24 + 16 + 16 + 4;

        int encodedLength() {
            int n = FIXED;
            for (RegionKeys r : regions) {
                n += 16 + 4 * r.rkeys().length;
            }
            return n;
        }

        void encode(MemorySegment buf, long off) {
            buf.set(U32, off, rxDepth);
            buf.set(U32, off + 4, RX_BYTES);
            buf.set(U32, off + 8, chunkBytes);
            buf.set(U32, off + 12, cacheChunks);
            buf.set(U32, off + 16, stagingSlots);
            buf.set(U32, off + 20, stagingSlotBytes);
            buf.set(U64, off + 24, bgStagingAddress);
            buf.set(U32, off + 32, bgStagingRkey);
            buf.set(U32, off + 36, 0);
            buf.set(U64, off + 40, urgentStagingAddress);
            buf.set(U32, off + 48, urgentStagingRkey);
            buf.set(U32, off + 52, 0);
            buf.set(U32, off + 56, regions.size());
            long p = off + FIXED;
            for (RegionKeys r : regions) {
                buf.set(U32, p, r.mode());
                buf.set(U32, p + 4, r.rkeys().length);
                buf.set(U64, p + 8, r.base());
                p += 16;
                for (int k : r.rkeys()) {
                    buf.set(U32, p, k);
                    p += 4;
                }
            }
        }

        /**
         * Decodes and checks an untrusted RDMA_REGIONS payload against the source's layout.
         *
         * @param maxPayload the batch size the source announced (staging slots must hold one batch)
         */
        static Regions decode(MemorySegment buf, long off, long length, List<RegionDescriptor> layout, int maxPayload) {
            if (length < FIXED) {
                throw new WireException("RDMA_REGIONS payload of " + length + " bytes is shorter than its fixed part (" + FIXED + ")");
            }
            int rxDepth = buf.get(U32, off);
            int rxBytes = buf.get(U32, off + 4);
            int chunk = buf.get(U32, off + 8);
            int cache = buf.get(U32, off + 12);
            int slots = buf.get(U32, off + 16);
            int slotBytes = buf.get(U32, off + 20);
            long bgAddr = buf.get(U64, off + 24);
            int bgKey = buf.get(U32, off + 32);
            long urAddr = buf.get(U64, off + 40);
            int urKey = buf.get(U32, off + 48);
            int count = buf.get(U32, off + 56);
            if (rxDepth < RdmaOptions.MIN_QUEUE_DEPTH || rxDepth > RdmaOptions.MAX_QUEUE_DEPTH) {
                throw new WireException("RDMA_REGIONS: receive depth " + Integer.toUnsignedString(rxDepth) + " outside "
                        + RdmaOptions.MIN_QUEUE_DEPTH + ".." + RdmaOptions.MAX_QUEUE_DEPTH);
            }
            if (rxBytes != RX_BYTES) {
                throw new WireException("RDMA_REGIONS: receive buffers of " + Integer.toUnsignedString(rxBytes) + " bytes; this side uses " + RX_BYTES);
            }
            if (Integer.bitCount(chunk) != 1 || chunk < RdmaOptions.MIN_CHUNK_BYTES || chunk > RdmaOptions.MAX_CHUNK_BYTES) {
                throw new WireException("RDMA_REGIONS: chunk size " + Integer.toUnsignedString(chunk) + " is not a power of two in "
                        + RdmaOptions.MIN_CHUNK_BYTES + ".." + RdmaOptions.MAX_CHUNK_BYTES);
            }
            if (cache < RdmaOptions.MIN_CACHE_CHUNKS || cache > RdmaOptions.MAX_CACHE_CHUNKS) {
                throw new WireException("RDMA_REGIONS: registration cache of " + Integer.toUnsignedString(cache) + " chunks outside "
                        + RdmaOptions.MIN_CACHE_CHUNKS + ".." + RdmaOptions.MAX_CACHE_CHUNKS);
            }
            if (slots != 0 && (slots != STAGING_SLOTS || slotBytes != maxPayload)) {
                throw new WireException("RDMA_REGIONS: " + Integer.toUnsignedString(slots) + " staging slots of " + Integer.toUnsignedString(slotBytes)
                        + " bytes; expected " + STAGING_SLOTS + " of " + maxPayload);
            }
            if (count != layout.size()) {
                throw new WireException("RDMA_REGIONS: " + Integer.toUnsignedString(count) + " regions; the layout has " + layout.size());
            }
            RegionKeys[] out = new RegionKeys[count];
            long p = off + FIXED;
            long end = off + length;
            for (int i = 0; i < count; i++) {
                if (p + 16 > end) {
                    throw new WireException("RDMA_REGIONS truncated in region " + i + " of " + count);
                }
                int mode = buf.get(U32, p);
                int keys = buf.get(U32, p + 4);
                long base = buf.get(U64, p + 8);
                p += 16;
                RegionDescriptor d = layout.get(i);
                int expectKeys = switch (mode) {
                    case MODE_PINNED -> pieces(d.sizeBytes());
                    case MODE_ON_DEMAND, MODE_STAGED -> 0;
                    default -> throw new WireException("RDMA_REGIONS: region " + i + " has unknown mode " + Integer.toUnsignedString(mode));
                };
                if (keys != expectKeys) {
                    throw new WireException("RDMA_REGIONS: region " + i + " '" + d.name() + "' has " + Integer.toUnsignedString(keys)
                            + " keys; mode " + mode + " needs " + expectKeys);
                }
                if (mode == MODE_STAGED && slots == 0) {
                    throw new WireException("RDMA_REGIONS: region " + i + " '" + d.name() + "' is staged but no staging slots were given");
                }
                if (mode == MODE_ON_DEMAND && chunk < d.pageSize()) {
                    throw new WireException("RDMA_REGIONS: chunk size " + chunk + " is smaller than region " + i + "'s page size " + d.pageSize());
                }
                if (p + 4L * keys > end) {
                    throw new WireException("RDMA_REGIONS truncated in the keys of region " + i);
                }
                int[] rk = new int[keys];
                for (int k = 0; k < keys; k++) {
                    rk[k] = buf.get(U32, p);
                    p += 4;
                }
                out[i] = new RegionKeys(mode, base, rk);
            }
            if (p != end) {
                throw new WireException("RDMA_REGIONS: " + (end - p) + " unexpected bytes after the last region");
            }
            return new Regions(rxDepth, chunk, cache, slots, slotBytes, bgAddr, bgKey, urAddr, urKey, List.of(out));
        }
    }
}
