package io.pagewire.transport.unix;

import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.RegionFile;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.linux.FileDescriptors;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * The MEMORY frame: regions handed over with their file descriptors, right after a HELLO with
 * {@code FLAG_SHARED_MEMORY} on the urgent socket.
 *
 * <pre>
 *  header: type MEMORY, flags 0, region 0, first 0, count n, payload 16 x n
 *  n entries:  +----------------+----------------+--------------------------------+
 *              | region id (u32)| reserved (u32) |  offset in the file (u64)      |
 *              +----------------+----------------+--------------------------------+
 *  SCM_RIGHTS: n descriptors, in the entries' order, with the header's first byte
 * </pre>
 * Region ids ascend strictly; each descriptor must be a regular file (memfd, tmpfs, hugetlbfs, a
 * disk file) holding the whole region from its offset, which is a multiple of the page size.
 * On the destination the received descriptors are this object's until {@link #handTo} gives each
 * to the handler; {@link #close()} closes the rest.
 */
final class SharedMemory implements AutoCloseable {
    private static final int ENTRY = 16;

    private final int[] regionIds;
    private final long[] offsets;
    private final int[] fds;
    private int handed; // entries handed to the handler (their descriptors are its)

    private SharedMemory(int[] regionIds, long[] offsets, int[] fds) {
        this.regionIds = regionIds;
        this.offsets = offsets;
        this.fds = fds;
    }

    /** @return the ids of the regions of {@code layout} that have a file (what a source hands over) */
    static Set<Integer> sharable(RamLayout layout) {
        Set<Integer> ids = new LinkedHashSet<>();
        for (int i = 0; i < layout.regionCount(); i++) {
            if (layout.region(i).file() != null) {
                ids.add(i);
            }
        }
        return Set.copyOf(ids);
    }

    /** Source: sends the MEMORY frame for every region of {@code layout} that has a file. */
    static void send(NativeSocket s, RamLayout layout) throws IOException {
        List<Integer> ids = sharable(layout).stream().sorted().toList();
        if (ids.isEmpty() || ids.size() > NativeSocket.MAX_FDS) {
            throw new TransportException(Kind.INVALID_CONFIG, "share-memory=true hands over 1.." + NativeSocket.MAX_FDS
                    + " regions backed by a file (RamRegion.withFile), and this layout has " + ids.size());
        }
        int n = ids.size();
        int[] fds = new int[n];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment frame = arena.allocate(FrameHeader.LENGTH + (long) ENTRY * n, 8);
            new FrameHeader(frame).encode(FrameType.MEMORY, 0, 0, 0, n, ENTRY * n);
            for (int i = 0; i < n; i++) {
                RamRegion r = layout.region(ids.get(i));
                fds[i] = r.file().fd();
                long at = FrameHeader.LENGTH + (long) ENTRY * i;
                frame.set(Wire.U32, at, ids.get(i));
                frame.set(Wire.U32, at + 4, 0);
                frame.set(Wire.U64, at + 8, r.file().offset());
            }
            s.sendWithFds(frame, fds);
        }
    }

    /**
     * Destination: reads and checks the MEMORY frame that follows a HELLO asking to share memory.
     *
     * @throws TransportException naming what is wrong (the descriptors received are closed)
     */
    static SharedMemory receive(NativeSocket s, RamLayout layout) throws IOException {
        int regions = layout.regionCount();
        try (Arena arena = Arena.ofConfined()) {
            FrameHeader h = new FrameHeader(arena);
            int[] fds = s.recvWithFds(h.segment(), 0, FrameHeader.LENGTH, Math.min(regions, NativeSocket.MAX_FDS));
            SharedMemory m = new SharedMemory(new int[fds.length], new long[fds.length], fds);
            try {
                h.decode();
                if (h.type() != FrameType.MEMORY || h.flags() != 0) {
                    throw new WireException("expected a MEMORY frame after a HELLO with shared memory, got " + FrameType.name(h.type())
                            + " with flags 0x" + Integer.toHexString(h.flags()));
                }
                long n = h.count();
                if (n < 1 || n > regions || n != fds.length || Integer.toUnsignedLong(h.payloadLength()) != ENTRY * n) {
                    throw new WireException("MEMORY frame: " + n + " regions, " + fds.length + " descriptors and "
                            + Integer.toUnsignedLong(h.payloadLength()) + " payload bytes; expected 1.." + regions
                            + " regions, one descriptor and " + ENTRY + " bytes each");
                }
                MemorySegment entries = arena.allocate(ENTRY * n, 8);
                if (s.recvFully(entries, 0, entries.byteSize()) < 0) {
                    throw new WireException("MEMORY frame truncated: the source closed the connection");
                }
                for (int i = 0; i < n; i++) {
                    m.check(i, entries.get(Wire.U32, (long) ENTRY * i), entries.get(Wire.U64, (long) ENTRY * i + 8), layout);
                }
                return m;
            } catch (IOException | RuntimeException e) {
                m.close();
                throw e;
            }
        }
    }

    private void check(int i, int regionId, long offset, RamLayout layout) throws IOException {
        int previous = i == 0 ? -1 : regionIds[i - 1];
        if (regionId <= previous || regionId >= layout.regionCount()) {
            throw new WireException("MEMORY entry " + i + ": region id " + Integer.toUnsignedString(regionId) + " outside "
                    + (previous + 1) + ".." + (layout.regionCount() - 1) + " (ids ascend strictly)");
        }
        RamRegion r = layout.region(regionId);
        if (offset < 0 || offset % r.pageSize() != 0) {
            throw new WireException("MEMORY entry " + i + ": offset " + offset + " of region '" + r.name()
                    + "' is not a non-negative multiple of its page size " + r.pageSize());
        }
        long size = FileDescriptors.regularFileSize(fds[i], "the descriptor of region '" + r.name() + "'");
        if (size - offset < r.descriptor().sizeBytes()) {
            throw new TransportException(Kind.HANDSHAKE, "the file handed over for region '" + r.name() + "' holds " + size
                    + " bytes; the region needs " + r.descriptor().sizeBytes() + " from offset " + offset);
        }
        regionIds[i] = regionId;
        offsets[i] = offset;
    }

    /** @return the ids of the regions handed over */
    Set<Integer> regionIds() {
        Set<Integer> ids = new LinkedHashSet<>();
        for (int id : regionIds) {
            ids.add(id);
        }
        return Set.copyOf(ids);
    }

    /**
     * Gives every region to the handler. A descriptor is the handler's once its call returned; when a
     * call throws, that descriptor and the rest stay here (and {@link #close()} closes them).
     */
    void handTo(MessageHandler handler) {
        while (handed < fds.length) {
            handler.onSharedRegion(regionIds[handed], new RegionFile(fds[handed], offsets[handed]));
            handed++;
        }
    }

    /** Closes every descriptor not handed over. Idempotent. */
    @Override
    public void close() {
        while (handed < fds.length) {
            FileDescriptors.close(fds[handed++]);
        }
    }
}
