package io.pagewire.ramtracker.linux;

import io.pagewire.ramtracker.RamTrackerException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The {@code PAGEMAP_SCAN} ioctl on {@code /proc/self/pagemap} (Linux 6.7+): asks the kernel's
 * page tables which pages of this process are written (since write-protection), present or
 * swapped, in ranges rather than one entry per page, and optionally write-protects the written
 * ones in the same pass.
 *
 * <p>Intent-level operations: {@link #collectWritten} (the dirty-tracking collect) and
 * {@link #nextPopulated}/{@link #nextUnpopulated} (which pages were never populated, found
 * without reading them).
 *
 * <p>Threading: one process-wide descriptor, opened on first use and kept for the life of the
 * JVM. Every method may be called from any thread: each thread has its own argument and result
 * buffers.
 */
public final class PageMap {
    private PageMap() {
    }

    /** Receives written ranges as byte offsets relative to the scanned segment. */
    @FunctionalInterface
    public interface RangeConsumer {
        /**
         * @param startOffset first byte (page-aligned), relative to the segment
         * @param endOffset end (exclusive, page-aligned)
         */
        void accept(long startOffset, long endOffset);
    }

    /** Regions per ioctl: 2048 * 24 bytes = 48 KiB per thread. */
    static final int VEC_REGIONS = 2048;

    private static final int FD;
    private static final String CAUSE;

    static {
        int fd = -1;
        String cause = Linux.unavailabilityCause();
        if (cause == null) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment cap = Libc.capture();
                fd = (int) Libc.OPEN.invokeExact(cap, arena.allocateFrom("/proc/self/pagemap"), Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
                if (fd < 0) {
                    cause = "cannot open /proc/self/pagemap: " + Linux.describeErrno(Libc.errno(cap)) + " (is /proc mounted?)";
                } else {
                    cause = probeScan(fd);
                }
            } catch (Throwable t) {
                throw new ExceptionInInitializerError(t);
            }
        }
        FD = fd;
        CAUSE = cause;
    }

    /** Issues one empty PAGEMAP_SCAN to learn whether the kernel knows the ioctl. */
    private static String probeScan(int fd) throws Throwable {
        MemorySegment cap = Libc.capture();
        MemorySegment arg = Libc.scratch();
        arg.fill((byte) 0);
        arg.set(JAVA_LONG, 0, Libc.PM_SCAN_ARG_SIZE);
        // An empty range with no output vector is a valid no-op scan on kernels that have the ioctl.
        int rc = (int) Libc.IOCTL.invokeExact(cap, fd, Libc.PAGEMAP_SCAN, arg);
        if (rc < 0) {
            int errno = Libc.errno(cap);
            return "the PAGEMAP_SCAN ioctl is not available: " + Linux.describeErrno(errno)
                    + (errno == Libc.ENOTTY || errno == Libc.EINVAL ? " (it needs Linux 6.7+)" : "");
        }
        return null;
    }

    /** @return true when PAGEMAP_SCAN works here */
    public static boolean isAvailable() {
        return CAUSE == null;
    }

    /** @return why PAGEMAP_SCAN cannot be used (naming the kernel version needed), or null when it can */
    public static String unavailabilityCause() {
        return CAUSE;
    }

    private static final class Buffers {
        final MemorySegment arg;
        final MemorySegment vec;

        Buffers() {
            Arena arena = Arena.ofAuto();
            arg = arena.allocate(Libc.PM_SCAN_ARG_SIZE, 8);
            vec = arena.allocate(Libc.PAGE_REGION_SIZE * VEC_REGIONS, 8);
        }
    }

    /** Per-thread argument and result buffers: nothing is shared between threads. */
    private static final ThreadLocal<Buffers> BUFFERS = ThreadLocal.withInitial(Buffers::new);

    /**
     * Reports the pages of {@code [fromOffset, toOffset)} of {@code segment} that were written
     * since they were last write-protected (userfaultfd async write-protect), in address order,
     * adjacent pages merged into one range. With {@code reprotect}, each reported page is
     * write-protected again in the same page-table pass, atomically with reading its state
     * ({@code PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC}): a write that lands after the kernel
     * passed a page is reported by the next call, never lost.
     *
     * @param segment a mapping registered for async write-protect
     * @param fromOffset first byte (page-aligned)
     * @param toOffset end (page-aligned)
     * @param reprotect write-protect the reported pages again
     * @param out receives the ranges, relative to {@code segment}
     * @return bytes reported
     */
    public static long collectWritten(MemorySegment segment, long fromOffset, long toOffset, boolean reprotect, RangeConsumer out) {
        long flags = reprotect ? Libc.PM_SCAN_WP_MATCHING | Libc.PM_SCAN_CHECK_WPASYNC : Libc.PM_SCAN_CHECK_WPASYNC;
        return scan(segment, fromOffset, toOffset, flags, 0, Libc.PAGE_IS_WRITTEN, 0, Libc.PAGE_IS_WRITTEN, VEC_REGIONS, out,
                reprotect ? "collect written pages and re-protect them" : "collect written pages");
    }

    /**
     * Write-protects every page of {@code [fromOffset, toOffset)} of a range registered for
     * userfaultfd async write-protect, populated or not, in one page-table pass
     * ({@code PM_SCAN_WP_MATCHING} with no category filter and no output). Measured on a
     * populated 1 GiB memfd: 10 ms, against 23 ms for {@code UFFDIO_WRITEPROTECT}.
     *
     * @param segment a mapping registered for async write-protect
     * @param fromOffset first byte (page-aligned)
     * @param toOffset end (page-aligned)
     */
    public static void writeProtect(MemorySegment segment, long fromOffset, long toOffset) {
        String what = "write-protect pages";
        checkRange(segment, fromOffset, toOffset, what);
        Buffers b = BUFFERS.get();
        long base = segment.address();
        long end = base + toOffset;
        long position = base + fromOffset;
        while (position < end) {
            ioctl(b, position, end, Libc.PM_SCAN_WP_MATCHING | Libc.PM_SCAN_CHECK_WPASYNC, 0, 0, 0, 0, 0, 0, what);
            position = advance(b, position, what);
        }
    }

    /**
     * As {@link #writeProtect}, and reports which pages held data when the pass protected them: each page's state
     * is read and the page protected under its page-table lock, so a page reported as not populated was a hole at
     * that moment (it gets userfaultfd's marker) and can only be written afterwards, which the write tracking sees.
     *
     * @param segment a mapping registered for async write-protect
     * @param fromOffset first byte (page-aligned)
     * @param toOffset end (page-aligned)
     * @param populated receives the ranges that were present (not the shared zero page) or swapped, relative to
     *                  {@code segment}, in address order
     */
    public static void writeProtectReportingPopulated(MemorySegment segment, long fromOffset, long toOffset, RangeConsumer populated) {
        // No category filter: every page matches and is protected; the vector says what each range was.
        scan(segment, fromOffset, toOffset, Libc.PM_SCAN_WP_MATCHING | Libc.PM_SCAN_CHECK_WPASYNC, 0, 0, 0,
                Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_SWAPPED | Libc.PAGE_IS_PFNZERO, VEC_REGIONS, (start, end, c) -> {
                    if ((c & Libc.PAGE_IS_SWAPPED) != 0 || ((c & Libc.PAGE_IS_PRESENT) != 0 && (c & Libc.PAGE_IS_PFNZERO) == 0)) {
                        populated.accept(start, end);
                    }
                }, "write-protect pages");
    }

    /**
     * For anonymous memory under userfaultfd write-protection, where the markers of never-populated pages read as
     * swapped: the first page that has data of its own now for certain, that is present (not the shared zero page)
     * or swapped and written since it was protected (a protected swap entry is either a real one or a marker, which
     * the categories cannot tell apart; the caller knows the real ones from {@link #writeProtectReportingPopulated}
     * and its collects).
     *
     * @return the offset of the first such page in {@code [fromOffset, toOffset)}, or {@code toOffset}
     */
    public static long nextPresentOrWrittenSwap(MemorySegment segment, long fromOffset, long toOffset) {
        long present = first(segment, fromOffset, toOffset, Libc.PAGE_IS_PFNZERO, Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_PFNZERO, 0,
                Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_PFNZERO, "find present pages");
        if (present == fromOffset) {
            return present;
        }
        long swapped = first(segment, fromOffset, present, 0, Libc.PAGE_IS_SWAPPED | Libc.PAGE_IS_WRITTEN, 0,
                Libc.PAGE_IS_SWAPPED | Libc.PAGE_IS_WRITTEN, "find written swapped pages");
        return Math.min(present, swapped);
    }

    /**
     * The complement of {@link #nextPresentOrWrittenSwap}: the first page that is neither present (or only the
     * shared zero page) nor swapped and written since it was protected.
     *
     * @return the offset of the first such page in {@code [fromOffset, toOffset)}, or {@code toOffset}
     */
    public static long nextNeitherPresentNorWrittenSwap(MemorySegment segment, long fromOffset, long toOffset) {
        long q = fromOffset;
        while (q < toOffset) {
            // Not present, or the zero page: inverting PRESENT and asking for any of the two.
            long a = first(segment, q, toOffset, Libc.PAGE_IS_PRESENT, 0, Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_PFNZERO,
                    Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_PFNZERO, "find pages without memory");
            if (a == toOffset) {
                return toOffset;
            }
            // ... and not a written swap entry: inverting both and asking for any.
            long b = first(segment, a, toOffset, Libc.PAGE_IS_SWAPPED | Libc.PAGE_IS_WRITTEN, 0, Libc.PAGE_IS_SWAPPED | Libc.PAGE_IS_WRITTEN,
                    Libc.PAGE_IS_SWAPPED | Libc.PAGE_IS_WRITTEN, "find pages that are not written swap entries");
            if (b == a) {
                return a;
            }
            q = b; // [a, b) are written swap entries: data
        }
        return toOffset;
    }

    /**
     * @param segment any private anonymous mapping of this process
     * @param fromOffset first byte (page-aligned)
     * @param toOffset end (page-aligned)
     * @return the offset of the first populated page in the range (present or swapped, and not
     *         the shared zero page), or {@code toOffset} when there is none
     */
    public static long nextPopulated(MemorySegment segment, long fromOffset, long toOffset) {
        long both = Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_SWAPPED;
        // (present or swapped) and not PFNZERO: inverting PFNZERO and requiring it means "bit clear".
        return first(segment, fromOffset, toOffset, Libc.PAGE_IS_PFNZERO, Libc.PAGE_IS_PFNZERO, both,
                both | Libc.PAGE_IS_PFNZERO, "find populated pages");
    }

    /**
     * @param segment any private anonymous mapping of this process
     * @param fromOffset first byte (page-aligned)
     * @param toOffset end (page-aligned)
     * @return the offset of the first page in the range that has no memory of its own and reads
     *         as zeros (neither present nor swapped, or mapped to the shared zero page after a
     *         read), or {@code toOffset} when there is none
     */
    public static long nextUnpopulated(MemorySegment segment, long fromOffset, long toOffset) {
        long both = Libc.PAGE_IS_PRESENT | Libc.PAGE_IS_SWAPPED;
        // Inverting both categories and requiring both: pages that are neither present nor swapped.
        long missing = first(segment, fromOffset, toOffset, both, both, 0, both, "find unpopulated pages");
        if (missing == fromOffset) {
            return missing;
        }
        // The "or zero page" half cannot be said in the same question: ask it up to the first answer.
        return first(segment, fromOffset, missing, 0, Libc.PAGE_IS_PFNZERO, 0, Libc.PAGE_IS_PFNZERO, "find zero-page mappings");
    }

    /** @return the start offset of the first matching page, or {@code toOffset} */
    private static long first(MemorySegment segment, long fromOffset, long toOffset, long inverted, long mask, long anyOf,
            long returnMask, String what) {
        checkRange(segment, fromOffset, toOffset, what);
        Buffers b = BUFFERS.get();
        long base = segment.address();
        long end = base + toOffset;
        long position = base + fromOffset;
        while (position < end) {
            // max_pages = 1: the kernel stops at the first matching page instead of walking on to
            // merge the whole matching extent, so the cost is the distance to the match.
            int n = ioctl(b, position, end, 0, inverted, mask, anyOf, returnMask, 1, 1, what);
            if (n > 0) {
                return b.vec.get(JAVA_LONG, 0) - base;
            }
            position = advance(b, position, what);
        }
        return toOffset;
    }

    /**
     * The collect loop: the kernel stops when the output vector is full and says where in
     * {@code walk_end}; we go on from there until the range is done.
     */
    private static long scan(MemorySegment segment, long fromOffset, long toOffset, long flags, long inverted, long mask, long anyOf,
            long returnMask, int maxRegions, RangeConsumer out, String what) {
        return scan(segment, fromOffset, toOffset, flags, inverted, mask, anyOf, returnMask, maxRegions,
                (start, end, categories) -> out.accept(start, end), what);
    }

    /** A range of the output vector with its categories (masked by the scan's return mask). */
    @FunctionalInterface
    private interface RegionConsumer {
        void accept(long startOffset, long endOffset, long categories);
    }

    private static long scan(MemorySegment segment, long fromOffset, long toOffset, long flags, long inverted, long mask, long anyOf,
            long returnMask, int maxRegions, RegionConsumer out, String what) {
        checkRange(segment, fromOffset, toOffset, what);
        Buffers b = BUFFERS.get();
        MemorySegment vec = b.vec;
        long base = segment.address();
        long end = base + toOffset;
        long position = base + fromOffset;
        long reported = 0;
        while (position < end) {
            int n = ioctl(b, position, end, flags, inverted, mask, anyOf, returnMask, maxRegions, 0, what);
            for (int i = 0; i < n; i++) {
                long s = vec.get(JAVA_LONG, i * Libc.PAGE_REGION_SIZE);
                long e = vec.get(JAVA_LONG, i * Libc.PAGE_REGION_SIZE + 8);
                reported += e - s;
                out.accept(s - base, e - base, vec.get(JAVA_LONG, i * Libc.PAGE_REGION_SIZE + 16));
            }
            position = advance(b, position, what);
        }
        return reported;
    }

    private static void checkRange(MemorySegment segment, long fromOffset, long toOffset, String what) {
        if (CAUSE != null) {
            throw new RamTrackerException("cannot " + what + ": " + CAUSE);
        }
        if (fromOffset < 0 || toOffset > segment.byteSize() || fromOffset > toOffset) {
            throw new IndexOutOfBoundsException("cannot " + what + ": range [" + fromOffset + ", " + toOffset
                    + ") is outside the segment of " + segment.byteSize() + " bytes");
        }
    }

    /** @return walk_end of the last call, checked to have moved forward */
    private static long advance(Buffers b, long position, String what) {
        long walkEnd = b.arg.get(JAVA_LONG, 32);
        if (walkEnd <= position) {
            throw new RamTrackerException("ioctl(PAGEMAP_SCAN) made no progress at 0x" + Long.toHexString(position) + " while trying to "
                    + what + " (walk_end 0x" + Long.toHexString(walkEnd) + ")");
        }
        return walkEnd;
    }

    /** One PAGEMAP_SCAN call (struct pm_scan_arg filled field by field); returns the regions written to the vector. */
    private static int ioctl(Buffers b, long start, long end, long flags, long inverted, long mask, long anyOf, long returnMask,
            int vecLen, long maxPages, String what) {
        MemorySegment arg = b.arg;
        arg.set(JAVA_LONG, 0, Libc.PM_SCAN_ARG_SIZE);    // size
        arg.set(JAVA_LONG, 8, flags);                    // flags
        arg.set(JAVA_LONG, 16, start);                   // start
        arg.set(JAVA_LONG, 24, end);                     // end
        arg.set(JAVA_LONG, 32, 0L);                      // walk_end (out)
        arg.set(JAVA_LONG, 40, vecLen == 0 ? 0L : b.vec.address()); // vec (none when only write-protecting)
        arg.set(JAVA_LONG, 48, vecLen);                  // vec_len
        arg.set(JAVA_LONG, 56, maxPages);                // max_pages (0: no limit)
        arg.set(JAVA_LONG, 64, inverted);                // category_inverted
        arg.set(JAVA_LONG, 72, mask);                    // category_mask
        arg.set(JAVA_LONG, 80, anyOf);                   // category_anyof_mask
        arg.set(JAVA_LONG, 88, returnMask);              // return_mask
        try {
            MemorySegment cap = Libc.capture();
            int n;
            do {
                n = (int) Libc.IOCTL.invokeExact(cap, FD, Libc.PAGEMAP_SCAN, arg);
            } while (n < 0 && Libc.errno(cap) == Libc.EINTR);
            if (n < 0) {
                int errno = Libc.errno(cap);
                throw Linux.failure("ioctl(PAGEMAP_SCAN)", "to " + what + " in [0x" + Long.toHexString(start) + ", 0x"
                        + Long.toHexString(end) + ")", errno, errno == Libc.EPERM
                        ? "a page in the range is not registered for userfaultfd async write-protect (PM_SCAN_CHECK_WPASYNC)"
                        : null);
            }
            return n;
        } catch (Throwable t) {
            throw Linux.unexpected("ioctl(PAGEMAP_SCAN)", t);
        }
    }
}
