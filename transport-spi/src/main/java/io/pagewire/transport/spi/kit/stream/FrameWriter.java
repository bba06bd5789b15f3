package io.pagewire.transport.spi.kit.stream;

import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.linux.NativeSocket;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.zip.CRC32C;

/**
 * Writes frames to one socket with one gathering {@code sendmsg} per frame: header, then page
 * data straight from the source RAM segment (no copy), then the digest. With a data digest the
 * pages are first copied into a staging buffer and the CRC is taken over that copy: a running
 * guest may write a page while it is on its way, and a CRC over live memory would then not
 * match the bytes the kernel sent.
 *
 * <p>Not thread-safe: one writer per socket, used by one thread at a time (the urgent writer is
 * guarded by its lane's lock). Buffers are allocated once; nothing is allocated per frame.
 */
final class FrameWriter implements AutoCloseable {
    private final NativeSocket socket;
    private final Arena arena = Arena.ofShared();
    private final FrameHeader header;
    private final MemorySegment iov;
    private final MemorySegment indices;
    private final MemorySegment msghdr;
    private final MemorySegment trailer;
    private final MemorySegment staging; // null without data digest
    private final boolean dataDigest;
    /** ORed into every frame's flags: {@link FrameHeader#FLAG_URGENT_LANE} for the urgent writer of a shared channel, else 0. */
    private final int laneFlag;
    private final CRC32C crc = new CRC32C();

    /**
     * @param laneFlag flags added to every frame ({@link FrameHeader#FLAG_URGENT_LANE} or 0)
     */
    FrameWriter(NativeSocket socket, boolean dataDigest, int maxPayload, int laneFlag) {
        this.socket = socket;
        this.dataDigest = dataDigest;
        this.laneFlag = laneFlag;
        this.header = new FrameHeader(arena);
        this.iov = arena.allocate((Wire.MAX_LIST_PAGES + 4) * NativeSocket.IOVEC_BYTES, 8);
        this.indices = arena.allocate(Wire.MAX_LIST_PAGES * 8L, 8);
        this.msghdr = arena.allocate(NativeSocket.MSGHDR_BYTES, 8);
        this.trailer = arena.allocate(Wire.DIGEST_LENGTH, 8);
        this.staging = dataDigest ? arena.allocate(Math.max(maxPayload, Wire.MAX_CONTROL_BYTES), 4096)
                : arena.allocate(Math.max(Wire.MAX_CONTROL_BYTES, Wire.MAX_ERROR_BYTES), 64);
    }

    /**
     * Writes a PAGES frame.
     *
     * @return bytes written
     */
    long writePages(RamRegion region, int regionId, long firstPage, int pageCount) throws IOException {
        MemorySegment pages = region.pages(firstPage, pageCount);
        long len = pages.byteSize();
        if (dataDigest) {
            MemorySegment.copy(pages, 0, staging, 0, len);
            header.encode(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST | laneFlag, regionId, firstPage, pageCount, (int) len);
            trailer.set(Wire.U32, 0, Wire.crc32c(crc, staging, 0, len));
            NativeSocket.iovec(iov, 0, header.segment());
            NativeSocket.iovec(iov, 1, staging.asSlice(0, len));
            NativeSocket.iovec(iov, 2, trailer);
            socket.sendvFully(msghdr, iov, 3, FrameHeader.LENGTH + len + Wire.DIGEST_LENGTH);
            return FrameHeader.LENGTH + len + Wire.DIGEST_LENGTH;
        }
        header.encode(FrameType.PAGES, laneFlag, regionId, firstPage, pageCount, (int) len);
        NativeSocket.iovec(iov, 0, header.segment());
        NativeSocket.iovec(iov, 1, pages);
        socket.sendvFully(msghdr, iov, 2, FrameHeader.LENGTH + len);
        return FrameHeader.LENGTH + len;
    }

    /**
     * Writes a PAGE_LIST frame: {@code n} scattered pages of one region (ascending), indices then
     * data, in one gathering send.
     *
     * @param pages ascending page indices; {@code n <= Wire.MAX_LIST_PAGES} and within the max payload
     * @return bytes written
     */
    long writePageList(RamRegion region, int regionId, long[] pages, int n) throws IOException {
        long pageSize = region.pageSize();
        long indexBytes = 8L * n;
        long payload = indexBytes + n * pageSize;
        for (int i = 0; i < n; i++) {
            indices.set(Wire.U64, 8L * i, pages[i]);
        }
        MemorySegment memory = region.memory();
        if (dataDigest) {
            MemorySegment.copy(indices, 0, staging, 0, indexBytes);
            for (int i = 0; i < n; i++) {
                MemorySegment.copy(memory, pages[i] * pageSize, staging, indexBytes + i * pageSize, pageSize);
            }
            header.encode(FrameType.PAGE_LIST, FrameHeader.FLAG_DATA_DIGEST | laneFlag, regionId, 0, n, (int) payload);
            trailer.set(Wire.U32, 0, Wire.crc32c(crc, staging, 0, payload));
            NativeSocket.iovec(iov, 0, header.segment());
            NativeSocket.iovec(iov, 1, staging.asSlice(0, payload));
            NativeSocket.iovec(iov, 2, trailer);
            socket.sendvFully(msghdr, iov, 3, FrameHeader.LENGTH + payload + Wire.DIGEST_LENGTH);
            return FrameHeader.LENGTH + payload + Wire.DIGEST_LENGTH;
        }
        header.encode(FrameType.PAGE_LIST, laneFlag, regionId, 0, n, (int) payload);
        NativeSocket.iovec(iov, 0, header.segment());
        NativeSocket.iovec(iov, 1, indices.asSlice(0, indexBytes));
        int k = 2;
        // Straight from guest RAM: one iovec per run of adjacent pages.
        for (int i = 0; i < n; ) {
            int j = i + 1;
            while (j < n && pages[j] == pages[j - 1] + 1) {
                j++;
            }
            NativeSocket.iovec(iov, k++, memory, pages[i] * pageSize, (j - i) * pageSize);
            i = j;
        }
        socket.sendvFully(msghdr, iov, k, FrameHeader.LENGTH + payload);
        return FrameHeader.LENGTH + payload;
    }

    /**
     * Writes a frame without payload.
     *
     * @return bytes written
     */
    long writeHeaderOnly(int type, int region, long first, long count) throws IOException {
        header.encode(type, laneFlag, region, first, count, 0);
        socket.sendFully(header.segment(), 0, FrameHeader.LENGTH);
        return FrameHeader.LENGTH;
    }

    private long writeWithPayload(int type, MemorySegment payload) throws IOException {
        long len = payload.byteSize();
        header.encode(type, laneFlag, 0, 0, 0, (int) len);
        NativeSocket.iovec(iov, 0, header.segment());
        NativeSocket.iovec(iov, 1, payload);
        socket.sendvFully(msghdr, iov, 2, FrameHeader.LENGTH + len);
        return FrameHeader.LENGTH + len;
    }

    /**
     * Writes a frame whose payload (a CONTROL's or ERROR's, at most 64 KiB, heap or native) is copied first.
     *
     * @return bytes written
     */
    long writePayload(int type, MemorySegment payload) throws IOException {
        long n = payload.byteSize();
        MemorySegment.copy(payload, 0, staging, 0, n);
        return writeWithPayload(type, staging.asSlice(0, n));
    }

    @Override
    public void close() {
        arena.close();
    }
}
