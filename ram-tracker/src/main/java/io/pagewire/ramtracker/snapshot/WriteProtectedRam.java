package io.pagewire.ramtracker.snapshot;

import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RamTrackerException;
import io.pagewire.ramtracker.linux.Userfaultfd;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * Guest RAM under synchronous userfaultfd write-protection ({@code UFFDIO_REGISTER_MODE_WP} without
 * {@code UFFD_FEATURE_WP_ASYNC}): after {@link #protectAll()} a write to any page of the regions stops
 * the writing thread and raises a fault message, until {@link #unprotect} lifts the protection of that
 * page and wakes the writer. This is QEMU's UFFD write-tracking snapshot (seed 003), and the opposite of
 * {@code UffdWriteTracker}, whose async mode lets writers through and only records them.
 *
 * <p>{@code UFFD_FEATURE_WP_UNPOPULATED} is required: it protects never-populated pages too (as page
 * table markers), so that the first write to a page that was a hole at the start instant faults like any
 * other; without it such a write would go unnoticed and a saver that reads the page later would see the
 * new data.
 *
 * <p>One userfaultfd serves all regions. Threading: {@link #readFaults} from one fault thread;
 * {@link #unprotect} from any thread; {@link #protectAll()} and {@link #close()} once each.
 */
public final class WriteProtectedRam implements AutoCloseable {
    /** Features every region needs. */
    public static final long REQUIRED_FEATURES = Userfaultfd.FEATURE_PAGEFAULT_FLAG_WP | Userfaultfd.FEATURE_WP_UNPOPULATED
            | Userfaultfd.FEATURE_THREAD_ID;

    private final List<GuestRegion> regions;
    private final Userfaultfd uffd;
    private final boolean fillOnFault;
    private final long[] starts;
    private final long[] ends;
    private boolean registered;
    private boolean closed;

    /** Features a region filled on fault ({@link #open(List, boolean)}) needs besides {@link #REQUIRED_FEATURES}. */
    public static final long FILL_FEATURES = Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MINOR_SHMEM
            | Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM;

    private WriteProtectedRam(List<GuestRegion> regions, Userfaultfd uffd, boolean fillOnFault) {
        this.regions = List.copyOf(regions);
        this.uffd = uffd;
        this.fillOnFault = fillOnFault;
        this.starts = new long[regions.size()];
        this.ends = new long[regions.size()];
        for (int i = 0; i < regions.size(); i++) {
            starts[i] = regions.get(i).memory().address();
            ends[i] = starts[i] + regions.get(i).sizeBytes();
        }
    }

    /**
     * @param regions the regions to protect
     * @return null when synchronous write-protection works here for all of them, else what is missing
     *         (naming the kernel feature)
     */
    public static String unavailabilityCause(List<GuestRegion> regions) {
        return unavailabilityCause(regions, false);
    }

    /**
     * @param regions the regions to protect
     * @param fillOnFault also fill pages on fault ({@link #open(List, boolean)}): the regions must be shared memory
     * @return null when it works here for all of them, else what is missing (naming the kernel feature)
     */
    public static String unavailabilityCause(List<GuestRegion> regions, boolean fillOnFault) {
        if (fillOnFault) {
            for (GuestRegion r : regions) {
                if (r.backing() != Backing.MEMFD) {
                    return "region '" + r.name() + "' is " + r.backing() + ": filling pages on fault (userfaultfd MINOR faults) needs a memfd";
                }
            }
            String missing = Userfaultfd.missingFeatures(REQUIRED_FEATURES | FILL_FEATURES);
            if (missing != null) {
                return missing;
            }
        }
        long required = REQUIRED_FEATURES;
        for (GuestRegion r : regions) {
            if (r.backing() != Backing.ANONYMOUS) {
                required |= Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM;
            }
        }
        return Userfaultfd.missingFeatures(required);
    }

    /**
     * Opens a userfaultfd for the regions (nothing is protected yet).
     *
     * @param regions the regions, each page-aligned
     * @return the protection, not yet active
     * @throws RamTrackerException naming the missing kernel feature
     */
    public static WriteProtectedRam open(List<GuestRegion> regions) {
        return open(regions, false);
    }

    /**
     * Opens a userfaultfd for the regions (nothing is protected yet), optionally also for filling pages on fault.
     *
     * <p>With {@code fillOnFault} the regions (memfd) are registered for MISSING and MINOR faults as well: a page whose
     * page-table entry is dropped ({@code MADV_DONTNEED} on the mapping: the page cache keeps the page) or that was
     * never populated stops the accessing thread with a fill fault ({@link #readFaults(MemorySegment, int, FaultSink,
     * FillSink)}) until {@link #fill} maps it, write-protected, from the page cache (write it through a second mapping
     * of the memfd first). A lazy apply drops the entries of the pages it must change, lets the guest run, and fills
     * them on fault or from a background filler.
     *
     * @param regions the regions, each page-aligned
     * @param fillOnFault register for fill faults too
     * @return the protection, not yet active
     * @throws RamTrackerException naming the missing kernel feature
     */
    public static WriteProtectedRam open(List<GuestRegion> regions, boolean fillOnFault) {
        if (regions.isEmpty()) {
            throw new IllegalArgumentException("no region to protect");
        }
        String cause = unavailabilityCause(regions, fillOnFault);
        if (cause != null) {
            throw new RamTrackerException("cannot write-protect guest RAM for a snapshot: " + cause);
        }
        long features = REQUIRED_FEATURES;
        for (GuestRegion r : regions) {
            if (r.backing() != Backing.ANONYMOUS) {
                features |= Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM;
            }
        }
        if (fillOnFault) {
            features |= FILL_FEATURES;
        }
        return new WriteProtectedRam(regions, Userfaultfd.open(features), fillOnFault);
    }

    /** @return the regions, index = position in this list */
    public List<GuestRegion> regions() {
        return regions;
    }

    /**
     * Registers every region for write-protect faults and protects all their pages (with
     * {@code UFFDIO_WRITEPROTECT}; {@code PAGEMAP_SCAN} cannot protect in synchronous mode). Call with
     * the guest paused: this is the snapshot's start instant.
     */
    public synchronized void protectAll() {
        if (closed || registered) {
            throw new IllegalStateException(closed ? "closed" : "already protected");
        }
        int done = 0;
        try {
            for (GuestRegion r : regions) {
                uffd.register(r.memory(), Userfaultfd.MODE_WP | (fillOnFault ? Userfaultfd.MODE_MISSING | Userfaultfd.MODE_MINOR : 0));
                done++;
                uffd.writeProtect(r.memory(), true);
            }
        } catch (RamTrackerException e) {
            for (int i = 0; i < done; i++) {
                uffd.writeProtect(regions.get(i).memory(), false);
                uffd.unregister(regions.get(i).memory());
            }
            throw new RamTrackerException("cannot write-protect " + regions.get(done == 0 ? 0 : done - 1) + ": " + e.getMessage(), e);
        }
        registered = true;
    }

    /**
     * Lifts the protection of pages and wakes every thread waiting on a write to them.
     *
     * @param region region index
     * @param firstPage first page
     * @param count pages
     */
    public void unprotect(int region, long firstPage, long count) {
        uffd.writeProtect(regions.get(region).pages(firstPage, count), false);
    }

    /**
     * Protects pages again (after {@link #protectAll()}), for a tracker that re-arms the pages it has handled: the next
     * write to them faults again. Pages may be written through a second mapping of the same file meanwhile without
     * faulting (the protection belongs to this mapping's page tables).
     *
     * @param region region index
     * @param firstPage first page
     * @param count pages
     */
    public void protect(int region, long firstPage, long count) {
        uffd.writeProtect(regions.get(region).pages(firstPage, count), true);
    }

    /**
     * Waits up to {@code timeoutMs} for write faults and reads those pending.
     *
     * @param buf room for events ({@link Userfaultfd#MSG_SIZE} each)
     * @param timeoutMs how long to wait for the first
     * @param sink receives each write fault
     * @return faults delivered
     */
    public int readFaults(MemorySegment buf, int timeoutMs, FaultSink sink) {
        return readFaults(buf, timeoutMs, sink, (region, page, missing) -> {
            throw new IllegalStateException("a fill fault (page " + page + " of region " + region + ") on RAM not opened for filling on fault");
        });
    }

    /**
     * Waits up to {@code timeoutMs} for faults and reads those pending: write faults to {@code writes}, fill faults
     * (MISSING, MINOR: {@link #open(List, boolean)}) to {@code fills}.
     *
     * @param buf room for events ({@link Userfaultfd#MSG_SIZE} each)
     * @param timeoutMs how long to wait for the first
     * @param writes receives each write fault
     * @param fills receives each fill fault
     * @return faults delivered
     */
    public int readFaults(MemorySegment buf, int timeoutMs, FaultSink writes, FillSink fills) {
        int n = uffd.readEvents(buf, timeoutMs);
        int faults = 0;
        for (int i = 0; i < n; i++) {
            if (Userfaultfd.event(buf, i) != Userfaultfd.EVENT_PAGEFAULT) {
                continue;
            }
            long address = Userfaultfd.faultAddress(buf, i);
            long flags = Userfaultfd.faultFlags(buf, i);
            for (int r = 0; r < starts.length; r++) {
                if (address >= starts[r] && address < ends[r]) {
                    long page = (address - starts[r]) >>> regions.get(r).pageShift();
                    if ((flags & Userfaultfd.FAULT_FLAG_WP) != 0) {
                        writes.fault(r, page, Userfaultfd.faultThreadId(buf, i));
                    } else {
                        fills.fault(r, page, (flags & Userfaultfd.FAULT_FLAG_MINOR) == 0);
                    }
                    faults++;
                    break;
                }
            }
        }
        return faults;
    }

    /**
     * Maps pages that are in the page cache but not mapped in the protected mapping, write-protected, and wakes the
     * threads waiting on them ({@code UFFDIO_CONTINUE_MODE_WP}); pages another thread mapped first are left alone.
     *
     * @param region region index
     * @param firstPage first page
     * @param count pages, each already in the page cache (written through a second mapping)
     * @return pages this call mapped
     */
    public long fill(int region, long firstPage, long count) {
        if (!fillOnFault) {
            throw new IllegalStateException("not opened for filling on fault");
        }
        GuestRegion r = regions.get(region);
        return uffd.place(r.pages(firstPage, count), null, r.pageSize(), true);
    }

    /** Receives fill faults. */
    @FunctionalInterface
    public interface FillSink {
        /**
         * @param region region index
         * @param page the page accessed
         * @param missing true when the page is not in the page cache at all (MISSING), false when it only is not mapped
         *                (MINOR)
         */
        void fault(int region, long page, boolean missing);
    }

    /** Receives write faults. */
    @FunctionalInterface
    public interface FaultSink {
        /**
         * @param region region index
         * @param page the page written
         * @param threadId the writer's kernel thread id
         */
        void fault(int region, long page, int threadId);
    }

    /**
     * Unregisters every region without lifting the protection range by range first: for a completed snapshot, whose
     * pages were all unprotected one run at a time already (a second walk of the page tables would only cost time).
     * The userfaultfd stays open until {@link #close()}.
     */
    public synchronized void unregisterAll() {
        if (closed || !registered) {
            return;
        }
        registered = false;
        for (GuestRegion r : regions) {
            uffd.unregister(r.memory());
        }
    }

    /** Lifts every protection (waking every waiter), unregisters and closes the userfaultfd. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (registered) {
                for (GuestRegion r : regions) {
                    uffd.writeProtect(r.memory(), false);
                    uffd.unregister(r.memory());
                }
            }
        } finally {
            uffd.close();
        }
    }
}
