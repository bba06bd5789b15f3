package io.pagewire.ramtracker;

import java.nio.file.Path;
import java.util.Objects;

/**
 * What to open as a guest RAM region: name, size, backing and page size. Fluent accessors in
 * the Aeron {@code Context} style ({@code pageSize(x)} / {@code pageSize()}); {@link #conclude()}
 * validates and fails early with a message naming the bad value.
 *
 * <p>Not thread-safe: build it in one thread, then hand it to {@link GuestRam#open(RegionSpec)}.
 */
public final class RegionSpec {
    /** 2 MiB: the hugetlb page size used for {@link #hugePages(boolean) huge} memfds. */
    public static final long HUGE_PAGE_2MIB = 2L << 20;

    private final String name;
    private final Backing backing;
    private final long sizeBytes;
    private final Path path;
    private long pageSize;
    private boolean hugePages;
    private boolean noReserve;

    private RegionSpec(String name, Backing backing, long sizeBytes, Path path) {
        this.name = Objects.requireNonNull(name, "name");
        this.backing = backing;
        this.sizeBytes = sizeBytes;
        this.path = path;
    }

    /**
     * @param name region name (unique within a {@link GuestRam}), like a QEMU RAMBlock id ("pc.ram")
     * @param sizeBytes size, a multiple of the page size
     * @return a memfd-backed region spec (the default backing)
     */
    public static RegionSpec memfd(String name, long sizeBytes) {
        return new RegionSpec(name, Backing.MEMFD, sizeBytes, null);
    }

    /**
     * @param name region name
     * @param sizeBytes size, a multiple of the page size
     * @return an anonymous-memory region spec
     */
    public static RegionSpec anonymous(String name, long sizeBytes) {
        return new RegionSpec(name, Backing.ANONYMOUS, sizeBytes, null);
    }

    /**
     * @param name region name
     * @param path a file on tmpfs ({@code /dev/shm/...}) or hugetlbfs; created if missing and
     *             sized to {@code sizeBytes}
     * @param sizeBytes size, a multiple of the page size
     * @return a file-backed region spec; the page size defaults to the file system's (the huge
     *         page size on hugetlbfs)
     */
    public static RegionSpec file(String name, Path path, long sizeBytes) {
        return new RegionSpec(name, Backing.FILE, sizeBytes, Objects.requireNonNull(path, "path"));
    }

    /** @return the region name */
    public String name() {
        return name;
    }

    /** @return the backing */
    public Backing backing() {
        return backing;
    }

    /** @return the size in bytes */
    public long sizeBytes() {
        return sizeBytes;
    }

    /** @return the backing file path ({@link Backing#FILE} only), else null */
    public Path path() {
        return path;
    }

    /**
     * @param bytes the page size: the unit of dirty tracking and of transfer; 0 for the default
     *              (the system page size, 2 MiB for huge memfds, the file system's block size for files)
     * @return this
     */
    public RegionSpec pageSize(long bytes) {
        this.pageSize = bytes;
        return this;
    }

    /** @return the page size asked for, 0 for the default */
    public long pageSize() {
        return pageSize;
    }

    /**
     * @param huge for a memfd: back it with 2 MiB hugetlb pages (they must be reserved with
     *             {@code sysctl vm.nr_hugepages}); for anonymous memory: ask for transparent huge
     *             pages ({@code MADV_HUGEPAGE}) while tracking stays at the base page size
     * @return this
     */
    public RegionSpec hugePages(boolean huge) {
        this.hugePages = huge;
        return this;
    }

    /** @return whether huge pages were asked for */
    public boolean hugePages() {
        return hugePages;
    }

    /**
     * @param noReserve anonymous memory only: reserve no swap space ({@code MAP_NORESERVE}), for
     *                  sparse regions larger than the memory that will ever be written
     * @return this
     */
    public RegionSpec noReserve(boolean noReserve) {
        this.noReserve = noReserve;
        return this;
    }

    /** @return whether {@code MAP_NORESERVE} was asked for */
    public boolean noReserve() {
        return noReserve;
    }

    /**
     * Validates what can be checked without the system.
     *
     * @return this
     * @throws IllegalArgumentException naming the bad value
     */
    public RegionSpec conclude() {
        if (name.isEmpty() || name.length() > 200 || name.indexOf('\0') >= 0 || name.indexOf('/') >= 0) {
            throw new IllegalArgumentException("region name '" + name + "' must be 1..200 characters with no '/' or NUL");
        }
        if (sizeBytes <= 0) {
            throw new IllegalArgumentException("region '" + name + "': size must be positive, got " + sizeBytes + " bytes");
        }
        if (pageSize < 0 || (pageSize != 0 && Long.bitCount(pageSize) != 1)) {
            throw new IllegalArgumentException("region '" + name + "': page size must be a power of two, got " + pageSize);
        }
        if (pageSize != 0 && sizeBytes % pageSize != 0) {
            throw new IllegalArgumentException("region '" + name + "': size " + sizeBytes + " is not a multiple of the page size " + pageSize);
        }
        if (noReserve && backing != Backing.ANONYMOUS) {
            throw new IllegalArgumentException("region '" + name + "': noReserve applies to anonymous memory only, not " + backing);
        }
        if (hugePages && backing == Backing.FILE) {
            throw new IllegalArgumentException("region '" + name + "': for huge pages from a file, put the file on hugetlbfs (hugePages() is for memfd and anonymous regions)");
        }
        if (hugePages && backing == Backing.MEMFD && pageSize != 0 && pageSize != HUGE_PAGE_2MIB) {
            throw new IllegalArgumentException("region '" + name + "': a huge memfd has 2 MiB pages, but page size " + pageSize + " was asked for");
        }
        return this;
    }

    @Override
    public String toString() {
        return backing + " region '" + name + "' of " + sizeBytes + " bytes" + (path != null ? " at " + path : "")
                + (pageSize != 0 ? ", page size " + pageSize : "") + (hugePages ? ", huge pages" : "") + (noReserve ? ", no reserve" : "");
    }
}
