package io.pagewire.ramtracker;

import io.pagewire.ramtracker.linux.Linux;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.NativeFile;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A guest's RAM: named {@link GuestRegion}s, all mapped in one long-lived shared {@link Arena}
 * (closing a shared arena is expensive, so there is one, closed once, by {@link #close()}).
 *
 * <pre>{@code
 * try (GuestRam ram = GuestRam.create()) {
 *     GuestRegion pc = ram.open(RegionSpec.memfd("pc.ram", 4L << 30));
 *     ...
 * }
 * }</pre>
 *
 * <p>Threading: {@link #open}, {@link #region}, {@link #regions} may be called from any thread.
 * {@link #close()} unmaps every region: call it only once nothing uses the memory any more
 * (the shared arena refuses to close while a native call holds one of its segments).
 */
public final class GuestRam implements AutoCloseable {
    private final Arena arena;
    private final List<GuestRegion> regions = new ArrayList<>();
    private final List<NativeFile> files = new ArrayList<>();
    private boolean closed;

    private GuestRam() {
        this.arena = Arena.ofShared();
    }

    /**
     * @return an empty guest RAM
     * @throws RamTrackerException when the native layer is unavailable (the message names the
     *         {@code --enable-native-access} flag or platform needed)
     */
    public static GuestRam create() {
        Linux.ensureAvailable();
        return new GuestRam();
    }

    /**
     * Opens a region: creates and sizes its memfd or file, or maps anonymous memory.
     *
     * @param spec what to open (validated with {@link RegionSpec#conclude()})
     * @return the region, mapped until this guest RAM closes
     */
    public GuestRegion open(RegionSpec spec) {
        spec.conclude();
        synchronized (this) {
            if (closed) {
                throw new IllegalStateException("guest RAM is closed; cannot open " + spec);
            }
            for (GuestRegion r : regions) {
                if (r.name().equals(spec.name())) {
                    throw new IllegalArgumentException("a region named '" + spec.name() + "' is already open: " + r);
                }
            }
            GuestRegion region = switch (spec.backing()) {
                case MEMFD -> openMemfd(spec);
                case FILE -> openFile(spec);
                case ANONYMOUS -> openAnonymous(spec);
            };
            regions.add(region);
            return region;
        }
    }

    private GuestRegion openMemfd(RegionSpec spec) {
        long pageSize = spec.hugePages() ? RegionSpec.HUGE_PAGE_2MIB : spec.pageSize() != 0 ? spec.pageSize() : Linux.basePageSize();
        checkMultiple(spec, pageSize);
        NativeFile file = NativeFile.memfd("pagewire:" + spec.name(), spec.hugePages());
        try {
            file.truncate(spec.sizeBytes());
            MemorySegment memory = map(spec, file);
            files.add(file);
            return new GuestRegion(this, regions.size(), spec.name(), Backing.MEMFD, pageSize, memory, file, spec.hugePages());
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
    }

    private GuestRegion openFile(RegionSpec spec) {
        NativeFile file = NativeFile.open(spec.path());
        try {
            NativeFile.FileSystem fs = file.fileSystem();
            long fsPage = fs.isHugetlbfs() ? fs.blockSize() : Linux.basePageSize();
            long pageSize = spec.pageSize() != 0 ? spec.pageSize() : fsPage;
            if (pageSize < fsPage) {
                throw new IllegalArgumentException("region '" + spec.name() + "': page size " + pageSize + " is smaller than the "
                        + (fs.isHugetlbfs() ? "hugetlbfs" : "system") + " page size " + fsPage + " of " + spec.path());
            }
            checkMultiple(spec, pageSize);
            if (file.size() != spec.sizeBytes()) {
                file.truncate(spec.sizeBytes());
            }
            MemorySegment memory = map(spec, file);
            files.add(file);
            return new GuestRegion(this, regions.size(), spec.name(), Backing.FILE, pageSize, memory, file, fs.isHugetlbfs());
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
    }

    private MemorySegment map(RegionSpec spec, NativeFile file) {
        try {
            return Mappings.mapShared(file, 0, spec.sizeBytes(), arena);
        } catch (RamTrackerException e) {
            throw new RamTrackerException("cannot map " + spec + ": " + e.getMessage(), e);
        }
    }

    private GuestRegion openAnonymous(RegionSpec spec) {
        long pageSize = spec.pageSize() != 0 ? spec.pageSize() : Linux.basePageSize();
        checkMultiple(spec, pageSize);
        MemorySegment memory = Mappings.mapAnonymous(spec.sizeBytes(), spec.noReserve(), arena);
        if (spec.hugePages()) {
            Mappings.adviseHugePages(memory);
        }
        return new GuestRegion(this, regions.size(), spec.name(), Backing.ANONYMOUS, pageSize, memory, null, spec.hugePages());
    }

    private static void checkMultiple(RegionSpec spec, long pageSize) {
        if (pageSize < Linux.basePageSize()) {
            throw new IllegalArgumentException("region '" + spec.name() + "': page size " + pageSize + " is smaller than the system page size "
                    + Linux.basePageSize());
        }
        if (spec.sizeBytes() % pageSize != 0) {
            throw new IllegalArgumentException("region '" + spec.name() + "': size " + spec.sizeBytes() + " is not a multiple of the page size "
                    + pageSize);
        }
    }

    /**
     * @param name region name
     * @return the region, or empty
     */
    public synchronized Optional<GuestRegion> region(String name) {
        for (GuestRegion r : regions) {
            if (r.name().equals(name)) {
                return Optional.of(r);
            }
        }
        return Optional.empty();
    }

    /** @return the regions in the order they were opened (a snapshot) */
    public synchronized List<GuestRegion> regions() {
        return List.copyOf(regions);
    }

    /** @return total bytes of all regions */
    public synchronized long totalBytes() {
        long total = 0;
        for (GuestRegion r : regions) {
            total += r.sizeBytes();
        }
        return total;
    }

    /**
     * @return the shared arena all regions live in; allocate long-lived companions (bitmaps,
     *         second mappings) here so that they go when the RAM goes
     */
    public Arena arena() {
        return arena;
    }

    /** Closes {@code file} with this guest RAM (a file a region adopted). */
    synchronized void own(NativeFile file) {
        if (closed) {
            file.close();
            throw new IllegalStateException("guest RAM is closed");
        }
        files.add(file);
    }

    /** Unmaps every region and closes their files. Idempotent. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        arena.close();
        RuntimeException failure = null;
        for (NativeFile f : files) {
            try {
                f.close();
            } catch (RuntimeException e) {
                // Keep closing the others; report the first failure, the rest as suppressed.
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }
}
