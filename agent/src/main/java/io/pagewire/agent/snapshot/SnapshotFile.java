package io.pagewire.agent.snapshot;

import io.pagewire.ramtracker.linux.NativeFile;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.zip.CRC32C;

import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * A complete snapshot file, opened for restore: the header and the completion marker are checked on
 * {@link #open} (a file without a valid marker is refused as torn), then a region is either mapped
 * copy-on-write ({@link #mapPrivate}: instant, pages read from the file on first touch) or loaded into memory
 * ({@link #load}), and {@link #verify} compares memory with the per-page checksums.
 *
 * <p>Threading: the methods may be called from any thread; close once nothing uses the mappings.
 */
public final class SnapshotFile implements AutoCloseable {
    private final Path path;
    private final FileChannel channel;
    private final SnapshotLayout layout;
    private final MemorySegment[] tables;
    private final long dataPages;
    private final long zeroPages;
    private final long startEpochNs;

    private SnapshotFile(Path path, FileChannel channel, SnapshotLayout layout, MemorySegment[] tables, long dataPages, long zeroPages,
            long startEpochNs) {
        this.path = path;
        this.channel = channel;
        this.layout = layout;
        this.tables = tables;
        this.dataPages = dataPages;
        this.zeroPages = zeroPages;
        this.startEpochNs = startEpochNs;
    }

    /**
     * Opens and checks a snapshot file: header (magic, version, checksum, layout, size) and completion marker
     * (magic, checksum, the checksum of every region's page-checksum table).
     *
     * @param path the file
     * @return the snapshot
     * @throws SnapshotException naming what is wrong (not a snapshot, torn, damaged)
     */
    public static SnapshotFile open(Path path) {
        FileChannel ch = null;
        Arena arena = Arena.ofConfined();
        try {
            // Java maps MAP_PRIVATE only from a channel open for writing; nothing is ever written through it.
            ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
            long size = ch.size();
            String what = "snapshot " + path;
            MemorySegment first = arena.allocate(Math.min(size, 64 + (long) SnapshotLayout.ENTRY_BYTES * SnapshotLayout.MAX_REGIONS + 4096));
            readFully(ch, first, 0, what);
            SnapshotLayout layout = SnapshotLayout.parseHeader(first, size, what);
            MemorySegment m = arena.allocate(SnapshotLayout.MARKER_BYTES);
            readFully(ch, m, layout.markerOffset(), what);
            if (m.asSlice(0, 8).mismatch(MemorySegment.ofArray(SnapshotLayout.MARKER_MAGIC)) != -1) {
                throw new SnapshotException(what + " is incomplete: no completion marker at offset " + layout.markerOffset()
                        + " (the snapshot was interrupted or the file is torn)");
            }
            if (SnapshotLayout.crc(m, 0, SnapshotLayout.MARKER_BYTES - 4) != m.get(JAVA_INT_UNALIGNED, SnapshotLayout.MARKER_BYTES - 4)) {
                throw new SnapshotException(what + ": completion marker checksum mismatch (the marker is damaged)");
            }
            List<SnapshotLayout.Region> regions = layout.regions();
            if (m.get(JAVA_INT_UNALIGNED, 12) != regions.size() || m.get(JAVA_INT_UNALIGNED, 40) != first.get(JAVA_INT_UNALIGNED, 48)) {
                throw new SnapshotException(what + ": completion marker belongs to another header");
            }
            MemorySegment[] tables = new MemorySegment[regions.size()];
            SnapshotFile f = null;
            Arena shared = Arena.ofShared();
            try {
                for (int i = 0; i < regions.size(); i++) {
                    SnapshotLayout.Region r = regions.get(i);
                    tables[i] = shared.allocate(r.tableBytes(), 8);
                    readFully(ch, tables[i], r.tableOffset(), what);
                    if (SnapshotLayout.crc(tables[i], 0, r.tableBytes()) != m.get(JAVA_INT_UNALIGNED, 48 + 16L * i)) {
                        throw new SnapshotException(what + ": page-checksum table of region '" + r.name() + "' does not match the marker");
                    }
                }
                f = new SnapshotFile(path, ch, layout, tables, m.get(JAVA_LONG_UNALIGNED, 16), m.get(JAVA_LONG_UNALIGNED, 24),
                        m.get(JAVA_LONG_UNALIGNED, 32));
                f.tablesArena = shared;
                return f;
            } finally {
                if (f == null) {
                    shared.close();
                }
            }
        } catch (IOException | RuntimeException e) {
            SnapshotFileWriter.closeAfter(ch, e);
            if (e instanceof SnapshotException se) {
                throw se;
            }
            throw new SnapshotException("cannot open snapshot " + path + ": " + e.getMessage(), e);
        } finally {
            arena.close();
        }
    }

    private Arena tablesArena;

    private static void readFully(FileChannel ch, MemorySegment dst, long position, String what) throws IOException {
        ByteBuffer b = dst.asByteBuffer();
        long pos = position;
        while (b.hasRemaining()) {
            int n = ch.read(b, pos);
            if (n < 0) {
                throw new SnapshotException(what + " ends at " + pos + ", before " + (position + dst.byteSize()) + ": the file is truncated");
            }
            pos += n;
        }
    }

    /** @return the regions, index = region id */
    public List<SnapshotLayout.Region> regions() {
        return layout.regions();
    }

    /** @return the layout */
    public SnapshotLayout layout() {
        return layout;
    }

    /** @return pages with data */
    public long dataPages() {
        return dataPages;
    }

    /** @return zero pages (holes) */
    public long zeroPages() {
        return zeroPages;
    }

    /** @return the snapshot's start instant, ns since the epoch */
    public long startEpochNs() {
        return startEpochNs;
    }

    /**
     * Maps a region copy-on-write ({@code MAP_PRIVATE}): instant, each page read from the file when first
     * touched; writes stay in this process and never reach the file.
     *
     * @param region region id
     * @param into the arena whose closing unmaps it
     * @return the region's memory
     */
    public MemorySegment mapPrivate(int region, Arena into) {
        SnapshotLayout.Region r = layout.regions().get(region);
        try {
            return channel.map(FileChannel.MapMode.PRIVATE, r.dataOffset(), r.sizeBytes(), into);
        } catch (IOException e) {
            throw new SnapshotException("cannot map region '" + r.name() + "' of " + path + ": " + e.getMessage(), e);
        }
    }

    /**
     * Loads a region into memory: reads only the file's data extents ({@code SEEK_DATA}/{@code SEEK_HOLE}); the
     * holes are left as they are in {@code dst}, which must read as zero there (fresh memory does).
     *
     * @param region region id
     * @param dst at least the region's size, zero where the file has holes
     * @return bytes read
     */
    public long load(int region, MemorySegment dst) {
        SnapshotLayout.Region r = layout.regions().get(region);
        if (dst.byteSize() < r.sizeBytes()) {
            throw new IllegalArgumentException("memory of " + dst.byteSize() + " bytes is smaller than region '" + r.name() + "' ("
                    + r.sizeBytes() + " bytes)");
        }
        long start = r.dataOffset();
        long end = start + r.sizeBytes();
        long read = 0;
        try (NativeFile nf = NativeFile.open(path)) {
            long off = start;
            while (off < end) {
                long d = nf.nextData(off);
                if (d < 0 || d >= end) {
                    break;
                }
                long h = Math.min(end, nf.nextHole(d));
                for (long pos = d; pos < h; pos += 8L << 20) {
                    long n = Math.min(8L << 20, h - pos);
                    readFully(channel, dst.asSlice(pos - start, n), pos, "snapshot " + path);
                }
                read += h - d;
                off = h;
            }
        } catch (IOException e) {
            throw new SnapshotException("cannot load region '" + r.name() + "' of " + path + ": " + e.getMessage(), e);
        }
        return read;
    }

    /** What {@link #verify} found. */
    public record Verification(long pagesChecked, long mismatches, long firstMismatch) {
        /** @return true when every page matched */
        public boolean ok() {
            return mismatches == 0;
        }
    }

    /**
     * Compares each page of {@code memory} with the page checksum recorded when it was saved.
     *
     * @param region region id
     * @param memory the region's memory (mapped or loaded)
     * @return pages checked and mismatches (the first one's index, or -1)
     */
    public Verification verify(int region, MemorySegment memory) {
        SnapshotLayout.Region r = layout.regions().get(region);
        CRC32C crc = new CRC32C();
        long size = r.pageSize();
        long bad = 0;
        long first = -1;
        for (long p = 0; p < r.pageCount(); p++) {
            crc.reset();
            crc.update(memory.asSlice(p * size, size).asByteBuffer());
            if ((int) crc.getValue() != tables[region].get(JAVA_INT_UNALIGNED, p * 4)) {
                if (first < 0) {
                    first = p;
                }
                bad++;
            }
        }
        return new Verification(r.pageCount(), bad, first);
    }

    /** Closes the file (mappings made by {@link #mapPrivate} stay valid until their arena closes). Idempotent. */
    @Override
    public synchronized void close() {
        try {
            channel.close();
        } catch (IOException e) {
            throw new SnapshotException("cannot close " + path + ": " + e.getMessage(), e);
        } finally {
            if (tablesArena != null) {
                tablesArena.close();
                tablesArena = null;
            }
        }
    }
}
