package io.pagewire.agent.snapshot;

import java.io.IOException;
import java.io.RandomAccessFile;
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
 * Writes a snapshot file ({@link SnapshotLayout}, {@code docs/snapshot-format.md}): the header at once, each
 * page at its own offset with a positional write (any order, from several threads at once), zero pages never
 * (they stay holes: the file is sparse), then at {@link #finish} the checksum tables and last the completion
 * marker, each step made durable before the next so that a file cut short anywhere has no valid marker.
 *
 * <p>Threading: {@link #pages} from any threads at once (different pages); {@link #finish} once, after them.
 */
public final class SnapshotFileWriter implements SnapshotSink {
    private static final ThreadLocal<CRC32C> CRC = ThreadLocal.withInitial(CRC32C::new);

    private final Path path;
    private final SnapshotLayout layout;
    private final FileChannel channel;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment[] tables;
    private final long[] regionDataPages;
    private final StorageOptions.Throttle throttle;
    private volatile boolean finished;
    private boolean closed;

    private SnapshotFileWriter(Path path, SnapshotLayout layout, FileChannel channel, StorageOptions storage) {
        this.path = path;
        this.layout = layout;
        this.channel = channel;
        this.throttle = storage.none() ? null : new StorageOptions.Throttle(storage);
        List<SnapshotLayout.Region> regions = layout.regions();
        this.tables = new MemorySegment[regions.size()];
        this.regionDataPages = new long[regions.size()];
        for (int i = 0; i < regions.size(); i++) {
            SnapshotLayout.Region r = regions.get(i);
            tables[i] = arena.allocate(r.tableBytes(), 4096);
            int zeroCrc = zeroPageCrc(r.pageSize());
            for (long p = 0; p < r.pageCount(); p++) {
                tables[i].set(JAVA_INT_UNALIGNED, p * 4, zeroCrc);
            }
        }
    }

    /** @return CRC32C of a page of zeros */
    static int zeroPageCrc(long pageSize) {
        CRC32C c = new CRC32C();
        ByteBuffer z = ByteBuffer.allocate(4096);
        for (long done = 0; done < pageSize; done += 4096) {
            c.update(z.clear());
        }
        return (int) c.getValue();
    }

    /**
     * Creates (or replaces) a snapshot file: sized, sparse, header written, no marker yet.
     *
     * @param path the file
     * @param regions the regions it holds
     * @param storage slow-storage emulation, or {@link StorageOptions#NONE}
     * @return the writer
     */
    public static SnapshotFileWriter create(Path path, List<SnapshotLayout.RegionSpec> regions, StorageOptions storage) {
        SnapshotLayout layout = SnapshotLayout.of(regions);
        FileChannel ch = null;
        try {
            ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.READ,
                    StandardOpenOption.TRUNCATE_EXISTING);
            try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
                raf.setLength(layout.fileBytes()); // ftruncate: sparse, every page a hole until written
            }
            try (Arena a = Arena.ofConfined()) {
                MemorySegment h = a.allocate(layout.headerBytes(), 4096);
                layout.writeHeader(h, 0); // the start instant is filled in by finish
                writeFully(ch, h, 0);
            }
            return new SnapshotFileWriter(path, layout, ch, storage);
        } catch (IOException | RuntimeException e) {
            closeAfter(ch, e);
            throw new SnapshotException("cannot create snapshot file " + path + ": " + e.getMessage(), e);
        }
    }

    /** Closes a channel after {@code failure}, keeping a close error as suppressed. */
    static void closeAfter(FileChannel ch, Exception failure) {
        if (ch == null) {
            return;
        }
        try {
            ch.close();
        } catch (IOException c) {
            failure.addSuppressed(c);
        }
    }

    /** @return the layout */
    public SnapshotLayout layout() {
        return layout;
    }

    /** @return the file */
    public Path path() {
        return path;
    }

    private static void writeFully(FileChannel ch, MemorySegment data, long position) throws IOException {
        ByteBuffer b = data.asByteBuffer();
        long pos = position;
        while (b.hasRemaining()) {
            pos += ch.write(b, pos);
        }
    }

    @Override
    public void pages(int region, long firstPage, int count, MemorySegment data, boolean urgent) {
        SnapshotLayout.Region r = layout.regions().get(region);
        if (firstPage < 0 || count < 1 || firstPage > r.pageCount() - count || data.byteSize() < count * r.pageSize()) {
            throw new IndexOutOfBoundsException("region '" + r.name() + "': pages [" + firstPage + ", +" + count + ") outside [0, "
                    + r.pageCount() + ") or data of " + data.byteSize() + " bytes too short");
        }
        CRC32C crc = CRC.get();
        long size = r.pageSize();
        for (int i = 0; i < count; i++) {
            crc.reset();
            crc.update(data.asSlice(i * size, size).asByteBuffer());
            tables[region].set(JAVA_INT_UNALIGNED, (firstPage + i) * 4, (int) crc.getValue());
        }
        if (throttle != null) {
            throttle.beforeWrite(count * size);
        }
        try {
            writeFully(channel, data.asSlice(0, count * size), r.dataOffset() + firstPage * size);
        } catch (IOException e) {
            throw new SnapshotException("cannot write pages [" + firstPage + ", +" + count + ") of region '" + r.name() + "' to " + path + ": "
                    + e.getMessage(), e);
        }
        synchronized (regionDataPages) {
            regionDataPages[region] += count;
        }
    }

    @Override
    public void finish(SnapshotSummary summary) {
        try {
            channel.force(false); // the pages, before anything says they are there
            List<SnapshotLayout.Region> regions = layout.regions();
            for (int i = 0; i < regions.size(); i++) {
                writeFully(channel, tables[i], regions.get(i).tableOffset());
            }
            channel.force(false);
            try (Arena a = Arena.ofConfined()) {
                MemorySegment m = a.allocate(SnapshotLayout.MARKER_BYTES, 4096);
                MemorySegment header = a.allocate(layout.headerBytes(), 4096);
                layout.writeHeader(header, summary.startEpochNs());
                writeFully(channel, header, 0);
                channel.force(false);
                MemorySegment.copy(MemorySegment.ofArray(SnapshotLayout.MARKER_MAGIC), 0, m, 0, 8);
                m.set(JAVA_INT_UNALIGNED, 8, SnapshotLayout.VERSION);
                m.set(JAVA_INT_UNALIGNED, 12, regions.size());
                long data = 0;
                synchronized (regionDataPages) {
                    for (long n : regionDataPages) {
                        data += n;
                    }
                    m.set(JAVA_LONG_UNALIGNED, 16, data);
                    m.set(JAVA_LONG_UNALIGNED, 24, summary.zeroPages());
                    m.set(JAVA_LONG_UNALIGNED, 32, summary.startEpochNs());
                    m.set(JAVA_INT_UNALIGNED, 40, header.get(JAVA_INT_UNALIGNED, 48));
                    for (int i = 0; i < regions.size(); i++) {
                        m.set(JAVA_INT_UNALIGNED, 48 + 16L * i, SnapshotLayout.crc(tables[i], 0, tables[i].byteSize()));
                        m.set(JAVA_LONG_UNALIGNED, 48 + 16L * i + 8, regionDataPages[i]);
                    }
                }
                m.set(JAVA_INT_UNALIGNED, SnapshotLayout.MARKER_BYTES - 4, SnapshotLayout.crc(m, 0, SnapshotLayout.MARKER_BYTES - 4));
                writeFully(channel, m, layout.markerOffset());
            }
            channel.force(false);
            finished = true;
        } catch (IOException e) {
            throw new SnapshotException("cannot complete snapshot file " + path + ": " + e.getMessage(), e);
        }
    }

    /** @return whether the completion marker was written */
    public boolean finished() {
        return finished;
    }

    /** Closes the file; without {@link #finish} it has no marker and is recognisably incomplete. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            channel.close();
        } catch (IOException e) {
            throw new SnapshotException("cannot close " + path + ": " + e.getMessage(), e);
        } finally {
            arena.close();
        }
    }
}
