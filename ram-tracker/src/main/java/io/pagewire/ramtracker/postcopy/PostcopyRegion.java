package io.pagewire.ramtracker.postcopy;

import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RamTrackerException;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.Userfaultfd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A destination region in postcopy: the guest runs on it before all its pages have arrived.
 *
 * <h2>Two modes, chosen by the backing</h2>
 * Anonymous memory uses MISSING faults and {@code UFFDIO_COPY} (measured 1.0-1.8 us per page, against
 * 2.9-5.3 us for MINOR's write-through-alias plus {@code UFFDIO_CONTINUE} on these machines; it needs
 * no second mapping, and pages from precopy are simply mapped already). A memfd or shmem file, which
 * a VMM shares with other processes, uses MINOR mode:
 *
 * <h2>MINOR mode over a second mapping</h2>
 * The region is a memfd (or shmem file). The guest's mapping ({@link GuestRegion#memory()}) is
 * registered with userfaultfd for MISSING and MINOR faults; pages are written through a second
 * mapping of the same file ({@link #alias()}), which the guest never sees, and then mapped into
 * the guest's with {@code UFFDIO_CONTINUE}. So a page is written once, where it will live, and
 * becomes visible whole and atomically; there is no staging copy inside the kernel as with
 * {@code UFFDIO_COPY}. A page that arrived before postcopy started is already in the page cache:
 * touching it raises a MINOR fault that is resolved locally ({@link #mapPresent}) without asking
 * the source. A page not there at all raises a MISSING fault: the agent asks the source for it.
 *
 * <h2>Exactly one writer per page</h2>
 * The fault answer (urgent lane), the background push and local MINOR resolution may race for the
 * same page. Each claims the page first ({@link #claimed} bit, set atomically); only the claimer
 * writes it through the alias and maps it; the others drop their copy. A page is never written
 * after it was mapped, so guest writes are never overwritten by a late copy.
 *
 * <h2>Threading</h2>
 * {@link #place}, {@link #placeZero} and {@link #mapPresent} may be called from any threads at
 * once; {@link #readFaults} from one fault thread.
 */
public final class PostcopyRegion implements AutoCloseable {
    /** How pages are placed. */
    public enum Mode {
        /** Anonymous memory: MISSING faults, pages copied in atomically with {@code UFFDIO_COPY} (the default: measured faster). */
        MISSING,
        /** memfd or shmem: MISSING and MINOR faults, pages written through a second mapping and mapped with {@code UFFDIO_CONTINUE}. */
        MINOR
    }

    /** userfaultfd features MINOR mode needs. */
    public static final long FEATURES = Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MINOR_SHMEM | Userfaultfd.FEATURE_THREAD_ID;
    /** userfaultfd features MISSING mode needs. */
    public static final long FEATURES_MISSING = Userfaultfd.FEATURE_THREAD_ID;
    private static final long ZERO_BYTES = 1L << 20;

    private final GuestRegion region;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment guest;
    private final MemorySegment alias;
    private final long pageSize;
    private final int pageShift;
    private final DirtyBitmap claimed;
    /** Pages mapped into the guest (claimed and placed: a fault on them is resolved). */
    private final DirtyBitmap mapped;
    private final Userfaultfd uffd;
    private final Mode mode;
    private final MemorySegment zeros;
    private boolean registered;
    private boolean closed;

    private PostcopyRegion(GuestRegion region, Userfaultfd uffd, Mode mode) {
        this.region = region;
        this.uffd = uffd;
        this.mode = mode;
        this.guest = region.memory().asSlice(0, region.sizeBytes());
        // MISSING mode writes before the switch straight into the guest's (not yet registered) mapping.
        this.alias = mode == Mode.MINOR ? region.mapAgain(arena).asSlice(0, region.sizeBytes()) : guest;
        this.zeros = mode == Mode.MISSING ? arena.allocate(ZERO_BYTES, 4096) : null;
        this.pageSize = region.pageSize();
        this.pageShift = region.pageShift();
        this.claimed = DirtyBitmap.allocate(region.pageCount(), arena);
        this.mapped = DirtyBitmap.allocate(region.pageCount(), arena);
    }

    /** @return null when postcopy can run on this region here, else why not */
    public static String unavailabilityCause(GuestRegion region) {
        if (!Userfaultfd.isAvailable()) {
            return Userfaultfd.unavailabilityCause();
        }
        return Userfaultfd.missingFeatures(modeOf(region) == Mode.MINOR ? FEATURES : FEATURES_MISSING);
    }

    /** @return the mode a region gets: MISSING for anonymous memory, MINOR for a memfd or shmem file */
    public static Mode modeOf(GuestRegion region) {
        return region.backing() == Backing.ANONYMOUS ? Mode.MISSING : Mode.MINOR;
    }

    /** @return this region's mode */
    public Mode mode() {
        return mode;
    }

    /**
     * Prepares a region for postcopy: the second mapping and a userfaultfd (not yet registered:
     * before {@link #start()} the guest does not run here and pages are simply written).
     */
    public static PostcopyRegion open(GuestRegion region) {
        String cause = unavailabilityCause(region);
        if (cause != null) {
            throw new RamTrackerException("postcopy on region '" + region.name() + "': " + cause);
        }
        Mode mode = modeOf(region);
        return new PostcopyRegion(region, Userfaultfd.open(mode == Mode.MINOR ? FEATURES : FEATURES_MISSING), mode);
    }

    /** @return the region */
    public GuestRegion region() {
        return region;
    }

    /** @return the second mapping, which the transport and placement write */
    public MemorySegment alias() {
        return alias;
    }

    /**
     * Registers the guest mapping for MISSING and MINOR faults: from now on a guest access to a
     * page not yet mapped blocks until it is placed. Call after {@link #discard} of stale pages
     * and before the guest runs.
     */
    public synchronized void start() {
        if (!registered) {
            uffd.register(guest, mode == Mode.MINOR ? Userfaultfd.MODE_MISSING | Userfaultfd.MODE_MINOR : Userfaultfd.MODE_MISSING);
            registered = true;
        }
    }

    /** @return whether {@link #start()} ran */
    public synchronized boolean started() {
        return registered;
    }

    /**
     * Makes pages whose copy here is stale (dirtied at the source after they were sent) fault on
     * the guest's next access, before {@link #start()} only. MISSING mode frees them, so the access
     * faults MISSING. MINOR mode keeps their page-cache pages (already allocated: writing the
     * current data over them later is the cheapest placement there is) and only removes them from
     * the guest's mapping, so the access faults MINOR; the caller must then treat a MINOR fault on
     * a stale page as missing, and must not map it as it is.
     */
    public void discard(long firstPage, long count) {
        if (mode == Mode.MINOR) {
            Mappings.dontNeed(guest.asSlice(firstPage << pageShift, count << pageShift));
        } else {
            region.discard(firstPage, count);
        }
    }

    /** @return whether the page is mapped into the guest (or being placed) */
    public boolean isPlaced(long page) {
        return claimed.isDirty(page);
    }

    /** @return whether the page is mapped into the guest (not merely claimed by a placement still under way) */
    public boolean isMapped(long page) {
        return mapped.isDirty(page);
    }

    /** @return pages mapped into the guest (or being placed) */
    public long placedCount() {
        return claimed.count();
    }

    /** @return word {@code wordIndex} of the placed-pages bitmap (bit i: page 64 * wordIndex + i is placed or being placed) */
    public long placedWord(long wordIndex) {
        return claimed.word(wordIndex);
    }

    /** @return the page of a faulting address in the guest mapping, or -1 when outside */
    public long pageOf(long address) {
        long off = address - guest.address();
        return off < 0 || off >= guest.byteSize() ? -1 : off >>> pageShift;
    }

    /** Claims a page; true for the one caller that may write and map it. */
    private boolean claim(long page) {
        long bit = 1L << (page & 63);
        return (claimed.orWordAtomic(page >>> 6, bit) & bit) == 0;
    }

    /**
     * Places pages: those nobody claimed yet are written through the alias from {@code data}
     * ({@code count * pageSize} bytes) and mapped, waking any thread that faulted on them.
     *
     * @param placedOut receives each page this call placed (may be null)
     * @return pages this call placed (the others were placed already and are left alone)
     */
    public long place(long firstPage, long count, MemorySegment data, PageSink placedOut) {
        return placeRuns(firstPage, count, data, placedOut);
    }

    /**
     * Reserves pages for a transport to receive into directly (no staging copy): before
     * {@link #start()} simply their place in the alias; after it, in MINOR mode, only when nobody
     * claimed any of them yet, and then they are claimed for the caller, which must follow with
     * {@link #placeReserved} or {@link #abandon}. MISSING mode after the start places with
     * {@code UFFDIO_COPY} from a buffer, so it reserves nothing.
     *
     * @return {@code count} pages of the alias to write, or null (some page is claimed: use {@link #place})
     */
    public MemorySegment reserve(long firstPage, long count) {
        MemorySegment where = alias.asSlice(firstPage << pageShift, count << pageShift);
        if (!started()) {
            return where;
        }
        if (mode != Mode.MINOR) {
            return null;
        }
        for (long p = firstPage; p < firstPage + count; p++) {
            if (!claim(p)) {
                // Someone else places this one: give back what was claimed so far, and let the caller
                // stage the frame; its placement then places every page still unclaimed.
                if (p > firstPage) {
                    claimed.clearRangeAtomic(firstPage, p - firstPage);
                }
                return null;
            }
        }
        return where;
    }

    /** @return whether {@code data} is the memory {@link #reserve} gave for pages from {@code firstPage} */
    public boolean isReserved(long firstPage, MemorySegment data) {
        return data.address() == alias.address() + (firstPage << pageShift);
    }

    /** Maps pages whose data was received into their {@link #reserve reserved} memory (before the start: nothing to do). */
    public long placeReserved(long firstPage, long count, PageSink placedOut) {
        if (!started()) {
            return 0;
        }
        map(firstPage, firstPage + count);
        if (placedOut != null) {
            for (long x = firstPage; x < firstPage + count; x++) {
                placedOut.page(x);
            }
        }
        return count;
    }

    /** Gives back reserved pages whose data never arrived whole: unclaimed, so that the next copy places them. */
    public synchronized void abandon(long firstPage, long count) {
        // Under the lock close() sets `closed` with: a frame failing while the region is closed leaves nothing to give back.
        if (!closed && registered && mode == Mode.MINOR) {
            claimed.clearRangeAtomic(firstPage, count);
        }
    }

    /** Places zero pages (nobody claimed yet): zeroes them through the alias and maps them. */
    public long placeZero(long firstPage, long count, PageSink placedOut) {
        return placeRuns(firstPage, count, null, placedOut);
    }

    private long placeRuns(long firstPage, long count, MemorySegment data, PageSink placedOut) {
        long placed = 0;
        long end = firstPage + count;
        long p = firstPage;
        while (p < end) {
            if (!claim(p)) {
                p++;
                continue;
            }
            long q = p + 1;
            while (q < end && claim(q)) {
                q++;
            }
            // [p, q) is ours.
            long off = p << pageShift;
            long len = (q - p) << pageShift;
            if (mode == Mode.MISSING && registered) {
                // Copied in and mapped atomically by the kernel; EEXIST (already there) is left alone.
                if (data != null) {
                    uffd.place(guest.asSlice(off, len), data.asSlice((p - firstPage) << pageShift, len), pageSize);
                } else {
                    for (long done = 0; done < len; done += ZERO_BYTES) {
                        long n = Math.min(ZERO_BYTES, len - done);
                        uffd.place(guest.asSlice(off + done, n), zeros.asSlice(0, n), pageSize);
                    }
                }
                mapped.markRangeAtomic(p, q - p);
            } else {
                // MINOR (or before the switch): write through the alias, then map it whole.
                if (data != null) {
                    MemorySegment.copy(data, (p - firstPage) << pageShift, alias, off, len);
                } else {
                    alias.asSlice(off, len).fill((byte) 0);
                }
                map(p, q);
            }
            placed += q - p;
            if (placedOut != null) {
                for (long x = p; x < q; x++) {
                    placedOut.page(x);
                }
            }
            p = q;
        }
        return placed;
    }

    /**
     * Maps pages already in the page cache (they arrived before postcopy started and are
     * current): resolves MINOR faults without asking the source.
     *
     * @return pages this call mapped
     */
    public long mapPresent(long firstPage, long count, PageSink placedOut) {
        long mapped = 0;
        long end = firstPage + count;
        for (long p = firstPage; p < end; ) {
            if (!claim(p)) {
                p++;
                continue;
            }
            long q = p + 1;
            while (q < end && claim(q)) {
                q++;
            }
            map(p, q);
            mapped += q - p;
            if (placedOut != null) {
                for (long x = p; x < q; x++) {
                    placedOut.page(x);
                }
            }
            p = q;
        }
        return mapped;
    }

    private void map(long from, long to) {
        // In MISSING mode pages written before the switch are mapped already: claiming them is all.
        if (registered && mode == Mode.MINOR) {
            uffd.place(guest.asSlice(from << pageShift, (to - from) << pageShift), null, pageSize);
        }
        mapped.markRangeAtomic(from, to - from);
    }

    /**
     * Reads pending fault events, waiting up to {@code timeoutMs}.
     *
     * @param buf room for events ({@link Userfaultfd#MSG_SIZE} each)
     * @param sink receives each page fault: page, faulting thread id, whether MINOR (page present)
     * @return faults delivered
     */
    public int readFaults(MemorySegment buf, int timeoutMs, FaultSink sink) {
        int n = uffd.readEvents(buf, timeoutMs);
        int faults = 0;
        for (int i = 0; i < n; i++) {
            if (Userfaultfd.event(buf, i) != Userfaultfd.EVENT_PAGEFAULT) {
                continue;
            }
            long page = pageOf(Userfaultfd.faultAddress(buf, i));
            if (page < 0) {
                continue;
            }
            sink.fault(page, Userfaultfd.faultThreadId(buf, i), (Userfaultfd.faultFlags(buf, i) & Userfaultfd.FAULT_FLAG_MINOR) != 0);
            faults++;
        }
        return faults;
    }

    /**
     * Tunes the calling thread, the one that calls {@link #readFaults}, for latency: a short scheduler
     * slice (Linux 6.12+, unprivileged) and 1 us of timer slack.
     *
     * @return null when applied, else why not
     */
    public static String tuneFaultThread(long sliceNs) {
        return io.pagewire.linux.ThreadTuning.urgentThread(sliceNs);
    }

    /** Receives page faults. */
    @FunctionalInterface
    public interface FaultSink {
        /**
         * @param page the faulting page
         * @param threadId the faulting thread's kernel id
         * @param minor true when the page is in the page cache (arrived earlier), false when missing
         */
        void fault(long page, int threadId, boolean minor);
    }

    /** Receives pages as they are placed. */
    @FunctionalInterface
    public interface PageSink {
        void page(long page);
    }

    /** Unregisters (waking any waiter, which then sees the page as it is) and unmaps the alias. Idempotent. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            if (registered) {
                uffd.unregister(guest);
                registered = false;
            }
        }
        uffd.close();
        arena.close();
    }
}
