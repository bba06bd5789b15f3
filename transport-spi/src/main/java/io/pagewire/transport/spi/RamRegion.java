package io.pagewire.transport.spi;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * One region of guest RAM as a transport sees it: the descriptor plus the memory. On the
 * source the memory is read; on the destination it is written (directly, or through a
 * {@link PagePlacer}).
 *
 * @param descriptor name, size, page size
 * @param memory the RAM, at least {@code descriptor.sizeBytes()} long; native (off-heap)
 * @param placer null to let the transport write {@code memory} directly
 * @param file where {@code memory} lives in a file (source: lets a {@link Capability#SHARED_MEMORY}
 *        transport hand the memory over instead of copying it), or null
 */
public record RamRegion(RegionDescriptor descriptor, MemorySegment memory, PagePlacer placer, RegionFile file) {
    public RamRegion {
        Objects.requireNonNull(descriptor, "descriptor");
        Objects.requireNonNull(memory, "memory");
        if (!memory.isNative()) {
            throw new TransportException(TransportException.Kind.INVALID_CONFIG,
                    "region '" + descriptor.name() + "': memory must be a native segment (mmap, memfd or Arena), not a heap array");
        }
        if (memory.byteSize() < descriptor.sizeBytes()) {
            throw new TransportException(TransportException.Kind.INVALID_CONFIG,
                    "region '" + descriptor.name() + "': segment is " + memory.byteSize() + " bytes, smaller than the region size "
                            + descriptor.sizeBytes());
        }
    }

    /** A region without a file: its pages are always copied. */
    public RamRegion(RegionDescriptor descriptor, MemorySegment memory, PagePlacer placer) {
        this(descriptor, memory, placer, null);
    }

    /**
     * @param name region name
     * @param memory the RAM (its whole size becomes the region size)
     * @param pageSize page size
     * @return a region written directly by the transport
     */
    public static RamRegion of(String name, MemorySegment memory, long pageSize) {
        return new RamRegion(new RegionDescriptor(name, memory.byteSize(), pageSize), memory, null);
    }

    /** @return this region with a placer */
    public RamRegion withPlacer(PagePlacer newPlacer) {
        return new RamRegion(descriptor, memory, newPlacer, file);
    }

    /** @return this region with the file its memory maps (see {@link RegionFile}) */
    public RamRegion withFile(RegionFile newFile) {
        if (newFile != null && newFile.offset() % descriptor.pageSize() != 0) {
            throw new TransportException(TransportException.Kind.INVALID_CONFIG, "region '" + name() + "': file offset "
                    + newFile.offset() + " is not a multiple of the page size " + descriptor.pageSize());
        }
        return new RamRegion(descriptor, memory, placer, newFile);
    }

    /** @return region name */
    public String name() {
        return descriptor.name();
    }

    /** @return page size */
    public long pageSize() {
        return descriptor.pageSize();
    }

    /** @return page count */
    public long pageCount() {
        return descriptor.pageCount();
    }

    /** @return a view of pages {@code [firstPage, firstPage + pageCount)}; bounds are checked */
    public MemorySegment pages(long firstPage, long pageCount) {
        long pageSize = descriptor.pageSize();
        if (firstPage < 0 || pageCount < 0 || firstPage > descriptor.pageCount() - pageCount) {
            throw new IndexOutOfBoundsException("region '" + name() + "': pages [" + firstPage + ", " + firstPage + "+" + pageCount
                    + ") outside 0.." + descriptor.pageCount());
        }
        return memory.asSlice(firstPage * pageSize, pageCount * pageSize);
    }
}
