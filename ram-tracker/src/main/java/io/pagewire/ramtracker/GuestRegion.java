package io.pagewire.ramtracker;

import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.NativeFile;
import io.pagewire.ramtracker.linux.PageMap;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Optional;

/**
 * One named region of guest RAM (like a QEMU RAMBlock): a {@link MemorySegment} over a memfd,
 * a file or anonymous memory, divided into pages of {@link #pageSize()} bytes. Pages are
 * indexed by {@code long} from 0; there is no 2^31-page ceiling.
 *
 * <p>Opened by {@link GuestRam#open(RegionSpec)}; it lives, mapped, until the {@link GuestRam}
 * closes. Every method may be called from any thread; what the pages contain is the caller's
 * business (guest RAM is written by the guest at any time).
 */
public final class GuestRegion {

    /** How this region can tell which pages were never populated, without reading them. */
    public enum PopulationSource {
        /** {@code lseek(SEEK_DATA/SEEK_HOLE)} on the backing file (memfd, tmpfs, most file systems). */
        FILE_HOLES,
        /** {@code PAGEMAP_SCAN} on the page tables: neither present nor swapped (anonymous memory). */
        PAGE_TABLES,
        /** Not known here (PAGEMAP_SCAN unavailable): every page counts as populated and is read. */
        NONE
    }

    private final GuestRam ram;
    private final int index;
    private final String name;
    private final Backing backing;
    private final long pageSize;
    private final int pageShift;
    private final long pageCount;
    private final MemorySegment memory;
    private volatile NativeFile file;
    private final boolean hugePages;
    private volatile PopulationSource population;
    /** While an anonymous region is write-tracked: the pages that may hold data (see {@link #trackedPopulation}). */
    private volatile io.pagewire.ramtracker.bitmap.DirtyBitmap trackedData;

    GuestRegion(GuestRam ram, int index, String name, Backing backing, long pageSize, MemorySegment memory, NativeFile file,
            boolean hugePages) {
        this.ram = ram;
        this.index = index;
        this.name = name;
        this.backing = backing;
        this.pageSize = pageSize;
        this.pageShift = Long.numberOfTrailingZeros(pageSize);
        this.pageCount = memory.byteSize() >>> pageShift;
        this.memory = memory;
        this.file = file;
        this.hugePages = hugePages;
        this.population = file != null ? PopulationSource.FILE_HOLES
                : PageMap.isAvailable() ? PopulationSource.PAGE_TABLES : PopulationSource.NONE;
    }

    /** @return the region name */
    public String name() {
        return name;
    }

    /** @return the position of this region in its {@link GuestRam} (0, 1, ...), usable as a wire region id */
    public int index() {
        return index;
    }

    /** @return the backing */
    public Backing backing() {
        return backing;
    }

    /** @return the page size in bytes (a power of two) */
    public long pageSize() {
        return pageSize;
    }

    /** @return log2 of the page size */
    public int pageShift() {
        return pageShift;
    }

    /** @return the number of pages */
    public long pageCount() {
        return pageCount;
    }

    /** @return the size in bytes */
    public long sizeBytes() {
        return memory.byteSize();
    }

    /** @return true when backed by huge pages (hugetlb, or transparent huge pages asked for) */
    public boolean hugePages() {
        return hugePages;
    }

    /** @return the whole region */
    public MemorySegment memory() {
        return memory;
    }

    /** @return the backing file (memfd or file), or empty for anonymous memory */
    public Optional<NativeFile> file() {
        return Optional.ofNullable(file);
    }

    /** @return how never-populated pages are found */
    public PopulationSource populationSource() {
        return population;
    }

    /**
     * For the write tracker of a whole anonymous region ({@code UffdWriteTracker}). While it tracks, userfaultfd's
     * markers make never-populated pages read as swapped in the page tables, and a marker cannot be told from a real
     * swap entry; population is then answered from {@code data}, the pages that held data when the protection
     * started or that were reported written since (the tracker keeps it), plus what the page tables say for certain
     * (present, or swapped and written since protection). A page in none of these was a hole when the protection
     * started and has not been written since: it reads as zeros. {@code null} ends it (before the protection comes
     * off). Regions that learn population from their file are not affected.
     *
     * @param data one bit per page of this region, or null
     */
    public void trackedPopulation(io.pagewire.ramtracker.bitmap.DirtyBitmap data) {
        if (data != null && (population != PopulationSource.PAGE_TABLES || data.pageCount() != pageCount)) {
            throw new IllegalArgumentException(this + ": tracked population needs page-table population and one bit per page ("
                    + pageCount + "), got " + population + " and " + data.pageCount());
        }
        this.trackedData = data;
    }

    /**
     * @param page page index
     * @return a view of one page; bounds are checked
     */
    public MemorySegment page(long page) {
        return pages(page, 1);
    }

    /**
     * @param firstPage first page
     * @param count pages
     * @return a view of pages {@code [firstPage, firstPage + count)}; bounds are checked
     */
    public MemorySegment pages(long firstPage, long count) {
        checkPages(firstPage, count);
        return memory.asSlice(firstPage << pageShift, count << pageShift);
    }

    /**
     * Populates pages in bulk so that writing them later takes no page fault: the destination
     * calls this before placing pages. Uses {@code MADV_POPULATE_WRITE}; on kernels before 5.14
     * a memfd or file region falls back to {@code fallocate}.
     *
     * @param firstPage first page
     * @param count pages
     */
    public void populate(long firstPage, long count) {
        MemorySegment range = pages(firstPage, count);
        if (count == 0) {
            return;
        }
        try {
            Mappings.populateWrite(range);
        } catch (RamTrackerException e) {
            if (e.errno() == 22 && file != null) { // EINVAL: MADV_POPULATE_WRITE unknown (Linux < 5.14)
                file.allocate(firstPage << pageShift, count << pageShift);
            } else {
                throw new RamTrackerException("region '" + name + "': cannot populate pages [" + firstPage + ", +" + count + "): "
                        + e.getMessage(), e);
            }
        }
    }

    /**
     * Discards pages: their memory is freed and they read as zeros (for a memfd or file, every
     * mapping sees the hole). For pages the guest gave back through the balloon.
     *
     * @param firstPage first page
     * @param count pages
     */
    public void discard(long firstPage, long count) {
        MemorySegment range = pages(firstPage, count);
        if (count == 0) {
            return;
        }
        if (file != null) {
            file.punchHole(firstPage << pageShift, count << pageShift);
        } else {
            Mappings.dontNeed(range);
        }
    }

    /**
     * Finds the next page that was ever populated, from the kernel's bookkeeping, without reading
     * memory. A page that was never populated reads as zeros.
     *
     * @param fromPage first page to consider
     * @param toPage end (exclusive)
     * @return the first populated page in {@code [fromPage, toPage)}, or {@code toPage}; with
     *         {@link PopulationSource#NONE} always {@code fromPage}
     */
    public long nextPopulatedPage(long fromPage, long toPage) {
        checkRange(fromPage, toPage);
        if (fromPage == toPage) {
            return toPage;
        }
        return switch (population) {
            case FILE_HOLES -> {
                long data = file.nextData(fromPage << pageShift);
                yield data < 0 ? toPage : Math.min(toPage, Math.max(fromPage, data >>> pageShift));
            }
            case PAGE_TABLES -> {
                io.pagewire.ramtracker.bitmap.DirtyBitmap data = trackedData;
                if (data == null) {
                    yield PageMap.nextPopulated(memory, fromPage << pageShift, toPage << pageShift) >>> pageShift;
                }
                long known = data.nextDirty(fromPage, toPage);
                yield known == fromPage ? fromPage
                        : PageMap.nextPresentOrWrittenSwap(memory, fromPage << pageShift, known << pageShift) >>> pageShift;
            }
            case NONE -> fromPage;
        };
    }

    /**
     * Finds the next page that was never populated (it reads as zeros), from the kernel's
     * bookkeeping, without reading memory.
     *
     * @param fromPage first page to consider
     * @param toPage end (exclusive)
     * @return the first never-populated page in {@code [fromPage, toPage)}, or {@code toPage};
     *         with {@link PopulationSource#NONE} always {@code toPage}
     */
    public long nextUnpopulatedPage(long fromPage, long toPage) {
        checkRange(fromPage, toPage);
        if (fromPage == toPage) {
            return toPage;
        }
        return switch (population) {
            case FILE_HOLES -> {
                long hole = file.nextHole(fromPage << pageShift);
                // A page counts as unpopulated only if the hole covers all of it: round up.
                yield hole < 0 ? toPage : Math.min(toPage, Math.max(fromPage, (hole + pageSize - 1) >>> pageShift));
            }
            case PAGE_TABLES -> {
                io.pagewire.ramtracker.bitmap.DirtyBitmap data = trackedData;
                if (data == null) {
                    yield PageMap.nextUnpopulated(memory, fromPage << pageShift, toPage << pageShift) >>> pageShift;
                }
                long q = fromPage;
                while (q < toPage) {
                    q = data.nextClean(q, toPage);
                    if (q == toPage) {
                        break;
                    }
                    long free = PageMap.nextNeitherPresentNorWrittenSwap(memory, q << pageShift, toPage << pageShift) >>> pageShift;
                    if (free == q) {
                        break;
                    }
                    q = free; // [q, free) has data in the page tables
                }
                yield q;
            }
            case NONE -> toPage;
        };
    }

    /**
     * Maps the whole region a second time (memfd and file regions only). Both mappings show the
     * same pages; postcopy writes a page through the second mapping and then maps it into the
     * guest's with {@code UFFDIO_CONTINUE} (MINOR mode), so placement needs no extra copy.
     *
     * @param arena the arena whose closing unmaps the second mapping
     * @return the second mapping
     */
    public MemorySegment mapAgain(Arena arena) {
        if (file == null) {
            throw new RamTrackerException("region '" + name + "' is anonymous memory and cannot be mapped twice; open it as a memfd "
                    + "(RegionSpec.memfd) to place pages through a second mapping");
        }
        return Mappings.mapShared(file, 0, memory.byteSize(), arena);
    }

    /**
     * Makes this region's memory a file opened elsewhere, typically a memfd another process handed
     * over (local live update): the file is mapped over the region's range at the same addresses
     * ({@code MAP_SHARED | MAP_FIXED}), so every view of {@link #memory()} now shows the file's pages,
     * and the file becomes the region's backing ({@link #file()}, {@link #mapAgain}, populate, discard).
     * What the region held before is dropped. Call before the region is registered with userfaultfd.
     *
     * @param fd the descriptor, owned by this region from now on (closed with its {@link GuestRam})
     * @param offset the region's first byte in the file, a multiple of the page size
     * @throws RamTrackerException when the file is shorter than the region from {@code offset}, or mmap fails
     */
    public void adopt(int fd, long offset) {
        NativeFile adopted = NativeFile.adopt(fd, "file handed over for region '" + name + "'");
        try {
            if (offset < 0 || offset % pageSize != 0) {
                throw new IllegalArgumentException("region '" + name + "': offset " + offset + " is not a non-negative multiple of the page size "
                        + pageSize);
            }
            long size = adopted.size();
            if (size - offset < memory.byteSize()) {
                throw new RamTrackerException("region '" + name + "' needs " + memory.byteSize() + " bytes from offset " + offset
                        + ", but the file handed over holds " + size);
            }
            Mappings.mapSharedOver(memory, adopted, offset);
        } catch (RuntimeException e) {
            adopted.close();
            throw e;
        }
        ram.own(adopted);
        this.file = adopted;
        this.population = PopulationSource.FILE_HOLES;
    }

    /** @return the {@link GuestRam} this region belongs to */
    public GuestRam ram() {
        return ram;
    }

    private void checkPages(long firstPage, long count) {
        if (firstPage < 0 || count < 0 || firstPage > pageCount - count) {
            throw new IndexOutOfBoundsException("region '" + name + "': pages [" + firstPage + ", +" + count + ") outside [0, "
                    + pageCount + ")");
        }
    }

    private void checkRange(long fromPage, long toPage) {
        if (fromPage < 0 || toPage > pageCount || fromPage > toPage) {
            throw new IndexOutOfBoundsException("region '" + name + "': page range [" + fromPage + ", " + toPage + ") outside [0, "
                    + pageCount + ")");
        }
    }

    @Override
    public String toString() {
        return "region '" + name + "' (" + backing + ", " + pageCount + " pages of " + pageSize + " bytes"
                + (hugePages ? ", huge pages" : "") + ")";
    }
}
