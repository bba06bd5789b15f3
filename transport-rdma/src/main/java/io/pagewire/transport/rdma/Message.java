package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.SendBatch;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.spi.wire.FrameHeader;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.pagewire.transport.spi.wire.Wire.U32;

/**
 * One send buffer of a {@link Channel} and the message being built in it: frames appended after
 * the envelope, the RDMA WRITEs that must land before it, and the registration references to
 * release when its SEND completes. Reused for every message through the buffer: building a
 * message allocates nothing.
 *
 * <p>Owned by one thread from {@link Channel#begin()} to {@link Channel#post}; then by the
 * channel until its completion.
 */
final class Message {
    static final long WRITE_TAG = 3L << 60;

    final int slot;
    final MemorySegment buf;
    final long address;
    final SendBatch batch = new SendBatch(Protocol.MAX_WRS);
    private final FrameHeader header;
    /** Staging copy for data digests (source), or null. */
    final MemorySegment txStaging;
    int txStagingLkey;

    int length;
    /** Page bytes reported by PAGES frames in this message (at most one batch). */
    long pageBytes;
    /** Pages in PAGES frames. */
    long pages;
    /** Whether the message carries pages into the peer's staging slot, and how many bytes so far. */
    boolean staged;
    int stagingSlot;
    long stagedBytes;
    long txStagingUsed;
    /** Registration references: cache slot per entry, local or remote. */
    final int[] localRefs = new int[Protocol.MAX_WRS * 2];
    final int[] remoteRefs = new int[Protocol.MAX_WRS * 2];
    int localRefCount;
    int remoteRefCount;
    /** Background page bytes to take off the pending count once posted. */
    long pendingBytes;
    /** Work requests posted with this message (writes plus the SEND). */
    int wrCount;
    /** Frames in this message. */
    int frames;

    Message(int slot, MemorySegment buf, Arena arena, MemorySegment txStaging) {
        this.slot = slot;
        this.buf = buf;
        this.address = buf.address();
        this.header = new FrameHeader(arena);
        this.txStaging = txStaging;
    }

    void reset() {
        length = Protocol.ENVELOPE;
        pageBytes = 0;
        pages = 0;
        staged = false;
        stagedBytes = 0;
        txStagingUsed = 0;
        localRefCount = 0;
        remoteRefCount = 0;
        pendingBytes = 0;
        wrCount = 0;
        frames = 0;
        batch.clear();
    }

    /** @return bytes still free in the message */
    int room() {
        return Protocol.RX_BYTES - length;
    }

    /** @return RDMA WRITEs that may still be added (one work request is kept for the SEND) */
    int writesRoom() {
        return batch.remaining() - 1;
    }

    /** @return true when nothing but the envelope is in it */
    boolean isEmpty() {
        return length == Protocol.ENVELOPE;
    }

    /** Appends a frame header (CRC included). */
    void frame(int type, int flags, int region, long first, long count, int payloadLength) {
        header.encode(type, flags, region, first, count, payloadLength);
        frames++;
        MemorySegment.copy(header.segment(), 0, buf, length, FrameHeader.LENGTH);
        length += FrameHeader.LENGTH;
    }

    /** Appends raw bytes (inline payload). */
    void bytes(MemorySegment src, long offset, long len) {
        MemorySegment.copy(src, offset, buf, length, len);
        length += (int) len;
    }

    /** Appends raw bytes from an array. */
    void bytes(byte[] src) {
        MemorySegment.copy(src, 0, buf, ValueLayout.JAVA_BYTE, length, src.length);
        length += src.length;
    }

    /** Appends a big-endian u32 (a digest trailer). */
    void u32(int v) {
        buf.set(U32, length, v);
        length += 4;
    }

    /** @return the buffer position for writing {@code n} bytes of a payload in place; advances past them */
    long reserve(int n) {
        long at = length;
        length += n;
        return at;
    }

    /** Adds an RDMA WRITE that must land before this message's SEND. */
    void write(long local, int len, int lkey, long remote, int rkey) {
        batch.rdma(Verbs.WR_RDMA_WRITE, WRITE_TAG | slot, 0, local, len, lkey, remote, rkey);
    }
}
