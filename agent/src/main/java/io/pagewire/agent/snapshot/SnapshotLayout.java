package io.pagewire.agent.snapshot;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * Where everything sits in a snapshot file (the fixed-offset layout of QEMU's mapped-ram and of Firecracker's
 * memory file); {@code docs/snapshot-format.md} is the reference. All integers are little-endian.
 *
 * <pre>
 * offset 0            header: magic, version, region table                      (headerBytes, 4 KiB multiple)
 * region[i].data      the region's pages, page p at data + p * pageSize          (2 MiB aligned; holes = zero pages)
 * region[i].table     CRC32C of each page, u32 per page                         (4 KiB aligned)
 * markerOffset        completion marker: counts, CRC32C of each table, own CRC  (4 KiB, written last)
 * </pre>
 *
 * Header (offsets in bytes):
 * <pre>
 *  0 magic "PWSNAP01"   8 u32 version (1)   12 u32 headerBytes   16 u32 regionCount   20 u32 flags (0)
 * 24 u64 fileBytes     32 u64 markerOffset 40 u64 startEpochNs  48 u32 header CRC32C (of headerBytes, this field 0)
 * 52..63 zero
 * 64 + 128 * i: region entry: 0 name (UTF-8, NUL-padded, 64 bytes)  64 u64 sizeBytes  72 u64 pageSize
 *               80 u64 dataOffset  88 u64 tableOffset  96..127 zero
 * </pre>
 * Marker:
 * <pre>
 *  0 magic "PWSNAPOK"   8 u32 version   12 u32 regionCount   16 u64 dataPages   24 u64 zeroPages
 * 32 u64 startEpochNs (as in the header)   40 u32 header CRC32C (as in the header)   44 u32 zero
 * 48 + 16 * i: u32 CRC32C of region i's table bytes, u32 zero, u64 region i's data pages
 * 4092 u32 CRC32C of bytes [0, 4092)
 * </pre>
 */
public final class SnapshotLayout {
    /** Header magic. */
    public static final byte[] MAGIC = "PWSNAP01".getBytes(StandardCharsets.US_ASCII);
    /** Completion-marker magic. */
    public static final byte[] MARKER_MAGIC = "PWSNAPOK".getBytes(StandardCharsets.US_ASCII);
    /** Format version. */
    public static final int VERSION = 1;
    /** Size of the marker. */
    public static final int MARKER_BYTES = 4096;
    /** Bytes of a region entry in the header. */
    public static final int ENTRY_BYTES = 128;
    /** Longest region name, bytes of UTF-8. */
    public static final int NAME_BYTES = 64;
    /** Most regions (as many as the marker holds). */
    public static final int MAX_REGIONS = (MARKER_BYTES - 4 - 48) / 16;
    /** Alignment of each region's data. */
    public static final long DATA_ALIGN = 2L << 20;
    /** Largest page size accepted (1 GiB). */
    public static final long MAX_PAGE_SIZE = 1L << 30;

    /** One region as the file holds it. */
    public record Region(String name, long sizeBytes, long pageSize, long dataOffset, long tableOffset) {
        /** @return pages */
        public long pageCount() {
            return sizeBytes / pageSize;
        }

        /** @return bytes of the checksum table */
        public long tableBytes() {
            return pageCount() * 4;
        }
    }

    /** A region to lay out: name, size and page size. */
    public record RegionSpec(String name, long sizeBytes, long pageSize) {
        public RegionSpec {
            if (name.isEmpty() || name.getBytes(StandardCharsets.UTF_8).length >= NAME_BYTES) {
                throw new IllegalArgumentException("region name '" + name + "' must be 1.." + (NAME_BYTES - 1) + " bytes of UTF-8");
            }
            if (pageSize < 4096 || pageSize > MAX_PAGE_SIZE || Long.bitCount(pageSize) != 1) {
                throw new IllegalArgumentException("region '" + name + "': page size " + pageSize + " is not a power of two in [4096, "
                        + MAX_PAGE_SIZE + "]");
            }
            if (sizeBytes <= 0 || sizeBytes % pageSize != 0) {
                throw new IllegalArgumentException("region '" + name + "': size " + sizeBytes + " is not a positive multiple of the page size "
                        + pageSize);
            }
        }
    }

    private final List<Region> regions;
    private final long headerBytes;
    private final long markerOffset;

    private SnapshotLayout(List<Region> regions, long headerBytes, long markerOffset) {
        this.regions = List.copyOf(regions);
        this.headerBytes = headerBytes;
        this.markerOffset = markerOffset;
    }

    /** @return the layout of a new file for these regions */
    public static SnapshotLayout of(List<RegionSpec> specs) {
        if (specs.isEmpty() || specs.size() > MAX_REGIONS) {
            throw new IllegalArgumentException("a snapshot holds 1.." + MAX_REGIONS + " regions, not " + specs.size());
        }
        long header = align(64L + (long) ENTRY_BYTES * specs.size(), 4096);
        long off = header;
        List<long[]> data = new ArrayList<>();
        for (RegionSpec s : specs) {
            off = align(off, Math.max(DATA_ALIGN, s.pageSize()));
            data.add(new long[] {off});
            off = Math.addExact(off, s.sizeBytes());
        }
        List<Region> regions = new ArrayList<>();
        for (int i = 0; i < specs.size(); i++) {
            RegionSpec s = specs.get(i);
            off = align(off, 4096);
            regions.add(new Region(s.name(), s.sizeBytes(), s.pageSize(), data.get(i)[0], off));
            off = Math.addExact(off, s.sizeBytes() / s.pageSize() * 4);
        }
        return new SnapshotLayout(regions, header, align(off, 4096));
    }

    /** @return the regions, index = region id */
    public List<Region> regions() {
        return regions;
    }

    /** @return bytes of the header */
    public long headerBytes() {
        return headerBytes;
    }

    /** @return where the completion marker goes */
    public long markerOffset() {
        return markerOffset;
    }

    /** @return the whole file's size */
    public long fileBytes() {
        return markerOffset + MARKER_BYTES;
    }

    static long align(long v, long a) {
        return Math.ceilDiv(v, a) * a;
    }

    /** Writes the header into {@code h} ({@link #headerBytes()} bytes, zeroed). */
    void writeHeader(MemorySegment h, long startEpochNs) {
        MemorySegment.copy(MemorySegment.ofArray(MAGIC), 0, h, 0, 8);
        h.set(JAVA_INT_UNALIGNED, 8, VERSION);
        h.set(JAVA_INT_UNALIGNED, 12, (int) headerBytes);
        h.set(JAVA_INT_UNALIGNED, 16, regions.size());
        h.set(JAVA_LONG_UNALIGNED, 24, fileBytes());
        h.set(JAVA_LONG_UNALIGNED, 32, markerOffset);
        h.set(JAVA_LONG_UNALIGNED, 40, startEpochNs);
        for (int i = 0; i < regions.size(); i++) {
            Region r = regions.get(i);
            long e = 64L + (long) ENTRY_BYTES * i;
            byte[] name = r.name().getBytes(StandardCharsets.UTF_8);
            MemorySegment.copy(MemorySegment.ofArray(name), 0, h, e, name.length);
            h.set(JAVA_LONG_UNALIGNED, e + 64, r.sizeBytes());
            h.set(JAVA_LONG_UNALIGNED, e + 72, r.pageSize());
            h.set(JAVA_LONG_UNALIGNED, e + 80, r.dataOffset());
            h.set(JAVA_LONG_UNALIGNED, e + 88, r.tableOffset());
        }
        h.set(JAVA_INT_UNALIGNED, 48, crc(h, 0, headerBytes));
    }

    /**
     * Parses and checks a header: every offset and size is checked against the file's size before use.
     *
     * @param first the file's first bytes (at least 64, or the whole header)
     * @param fileSize the file's size
     * @param what the file, for messages
     * @return the layout
     */
    static SnapshotLayout parseHeader(MemorySegment first, long fileSize, String what) {
        if (first.byteSize() < 64 || first.asSlice(0, 8).mismatch(MemorySegment.ofArray(MAGIC)) != -1) {
            throw new SnapshotException(what + " is not a pagewire snapshot (no PWSNAP01 magic at offset 0)");
        }
        int version = first.get(JAVA_INT_UNALIGNED, 8);
        if (version != VERSION) {
            throw new SnapshotException(what + ": format version " + version + " is not supported (this pagewire reads " + VERSION + ")");
        }
        long headerBytes = Integer.toUnsignedLong(first.get(JAVA_INT_UNALIGNED, 12));
        int n = first.get(JAVA_INT_UNALIGNED, 16);
        if (n < 1 || n > MAX_REGIONS) {
            throw new SnapshotException(what + ": region count " + n + " outside 1.." + MAX_REGIONS);
        }
        if (headerBytes != align(64L + (long) ENTRY_BYTES * n, 4096) || headerBytes > first.byteSize()) {
            throw new SnapshotException(what + ": header size " + headerBytes + " does not fit " + n + " regions");
        }
        int stored = first.get(JAVA_INT_UNALIGNED, 48);
        MemorySegment copy = MemorySegment.ofArray(new byte[(int) headerBytes]);
        MemorySegment.copy(first, 0, copy, 0, headerBytes);
        copy.set(JAVA_INT_UNALIGNED, 48, 0);
        if (crc(copy, 0, headerBytes) != stored) {
            throw new SnapshotException(what + ": header checksum mismatch (the header is damaged)");
        }
        long fileBytes = first.get(JAVA_LONG_UNALIGNED, 24);
        List<RegionSpec> specs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            long e = 64L + (long) ENTRY_BYTES * i;
            int len = 0;
            while (len < NAME_BYTES && first.get(java.lang.foreign.ValueLayout.JAVA_BYTE, e + len) != 0) {
                len++;
            }
            String name = new String(first.asSlice(e, len).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
            try {
                specs.add(new RegionSpec(name, first.get(JAVA_LONG_UNALIGNED, e + 64), first.get(JAVA_LONG_UNALIGNED, e + 72)));
            } catch (IllegalArgumentException ex) {
                throw new SnapshotException(what + ": region entry " + i + ": " + ex.getMessage(), ex);
            }
        }
        SnapshotLayout layout;
        try {
            layout = of(specs);
        } catch (ArithmeticException ex) {
            throw new SnapshotException(what + ": region sizes overflow", ex);
        }
        // The layout is a function of the region list: offsets stored must be the ones computed.
        for (int i = 0; i < n; i++) {
            long e = 64L + (long) ENTRY_BYTES * i;
            Region r = layout.regions.get(i);
            if (first.get(JAVA_LONG_UNALIGNED, e + 80) != r.dataOffset() || first.get(JAVA_LONG_UNALIGNED, e + 88) != r.tableOffset()) {
                throw new SnapshotException(what + ": region '" + r.name() + "' offsets do not follow the format");
            }
        }
        if (fileBytes != layout.fileBytes() || first.get(JAVA_LONG_UNALIGNED, 32) != layout.markerOffset()) {
            throw new SnapshotException(what + ": header says " + fileBytes + " bytes, the layout needs " + layout.fileBytes());
        }
        if (fileSize != fileBytes) {
            throw new SnapshotException(what + " is " + fileSize + " bytes, its header says " + fileBytes + ": the file is truncated or torn");
        }
        return layout;
    }

    /** @return CRC32C of {@code [offset, offset + length)} of a segment */
    static int crc(MemorySegment s, long offset, long length) {
        CRC32C c = new CRC32C();
        c.update(s.asSlice(offset, length).asByteBuffer());
        return (int) c.getValue();
    }
}
