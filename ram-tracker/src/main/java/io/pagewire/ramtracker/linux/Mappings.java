package io.pagewire.ramtracker.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Memory mappings as {@link MemorySegment}s: anonymous memory, shared mappings of a file, and
 * the {@code madvise} calls guest RAM needs (populate in bulk, transparent huge pages, discard).
 *
 * <p>A mapping lives as long as the {@link Arena} it was made in: closing the arena unmaps it.
 * Guest RAM uses one long-lived shared arena (closing shared arenas is expensive).
 */
public final class Mappings {
    private Mappings() {
    }

    /**
     * Maps private anonymous memory, read-write. The memory reads as zeros and is backed by
     * physical pages only when first written.
     *
     * @param bytes size, a multiple of the base page size
     * @param noReserve {@code MAP_NORESERVE}: no swap space is reserved, so a sparse mapping far
     *                  larger than RAM (e.g. a bitmap for a huge guest) can be made
     * @param arena the arena whose closing unmaps it
     * @return the mapping
     */
    public static MemorySegment mapAnonymous(long bytes, boolean noReserve, Arena arena) {
        int flags = Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | (noReserve ? Libc.MAP_NORESERVE : 0);
        return map(bytes, flags, -1, 0, arena, "anonymous memory" + (noReserve ? " (MAP_NORESERVE)" : ""));
    }

    /**
     * Maps {@code bytes} of a file at {@code offset}, shared and read-write: writes go to the
     * file, every mapping of the same file range sees the same pages (this is how a second
     * mapping of a memfd lets postcopy place pages with UFFDIO_CONTINUE).
     *
     * @param file the file
     * @param offset byte offset in the file, a multiple of its page size
     * @param bytes length
     * @param arena the arena whose closing unmaps it
     * @return the mapping
     */
    public static MemorySegment mapShared(NativeFile file, long offset, long bytes, Arena arena) {
        return map(bytes, Libc.MAP_SHARED, file.fd(), offset, arena, file.description() + " at offset " + offset);
    }

    /**
     * Maps {@code file} from {@code offset} over an existing mapping, at the same addresses
     * ({@code MAP_SHARED | MAP_FIXED}): every view of {@code existing} now reads and writes the
     * file's pages; the old pages are unmapped. The mapping still ends when {@code existing}'s
     * arena closes (same range).
     *
     * @param existing the range to replace (its whole size is mapped)
     */
    public static void mapSharedOver(MemorySegment existing, NativeFile file, long offset) {
        Linux.ensureAvailable();
        try {
            MemorySegment cap = Libc.capture();
            long addr = (long) Libc.MMAP.invokeExact(cap, existing.address(), existing.byteSize(), Libc.PROT_READ | Libc.PROT_WRITE,
                    Libc.MAP_SHARED | Libc.MAP_FIXED, file.fd(), offset);
            if (addr == Libc.MAP_FAILED) {
                throw Linux.failure("mmap", existing.byteSize() + " bytes of " + file.description() + " at offset " + offset
                        + " over 0x" + Long.toHexString(existing.address()), Libc.errno(cap), null);
            }
            if (addr != existing.address()) {
                throw new IllegalStateException("mmap(MAP_FIXED) placed the mapping at 0x" + Long.toHexString(addr) + ", not at 0x"
                        + Long.toHexString(existing.address()));
            }
        } catch (Throwable t) {
            throw Linux.unexpected("mmap", t);
        }
    }

    @SuppressWarnings("restricted") // giving the mapping its size and lifetime is what this method is for
    private static MemorySegment map(long bytes, int flags, int fd, long offset, Arena arena, String what) {
        Linux.ensureAvailable();
        if (bytes <= 0) {
            throw new IllegalArgumentException("mapping size must be positive: " + bytes + " bytes of " + what);
        }
        try {
            MemorySegment cap = Libc.capture();
            long addr = (long) Libc.MMAP.invokeExact(cap, 0L, bytes, Libc.PROT_READ | Libc.PROT_WRITE, flags, fd, offset);
            if (addr == Libc.MAP_FAILED) {
                int errno = Libc.errno(cap);
                throw Linux.failure("mmap", bytes + " bytes of " + what, errno,
                        errno == Libc.ENOMEM ? "not enough memory or address space (for hugetlbfs: reserve huge pages with sysctl vm.nr_hugepages)"
                                : null);
            }
            // munmap when the arena closes. The cleanup cannot report failure; munmap of the exact
            // range mmap returned fails only for invalid arguments, which this range is not.
            return MemorySegment.ofAddress(addr).reinterpret(bytes, arena, ignored -> unmap(addr, bytes));
        } catch (Throwable t) {
            throw Linux.unexpected("mmap", t);
        }
    }

    private static void unmap(long addr, long bytes) {
        try {
            int rc = (int) Libc.MUNMAP.invokeExact(Libc.capture(), addr, bytes);
            assert rc == 0 : "munmap(" + Long.toHexString(addr) + ", " + bytes + ") failed";
        } catch (Throwable t) {
            throw Linux.unexpected("munmap", t);
        }
    }

    /**
     * Populates a range writable in one call ({@code MADV_POPULATE_WRITE}, Linux 5.14+):
     * allocates and maps every page, as the destination does before placing pages so that it
     * does not take one page fault per page.
     *
     * @param range part of a mapping
     * @throws io.pagewire.ramtracker.RamTrackerException with errno EINVAL on kernels before 5.14,
     *         ENOMEM/EFAULT when the memory cannot be allocated
     */
    public static void populateWrite(MemorySegment range) {
        madvise(range, Libc.MADV_POPULATE_WRITE, "madvise(MADV_POPULATE_WRITE)", "needs Linux 5.14+ and enough free memory");
    }

    /**
     * Asks for transparent huge pages on an anonymous range ({@code MADV_HUGEPAGE}).
     *
     * @param range part of an anonymous mapping
     */
    public static void adviseHugePages(MemorySegment range) {
        madvise(range, Libc.MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE)", "transparent huge pages may be disabled in this kernel");
    }

    /**
     * Keeps transparent huge pages (of every size, mTHP included) and khugepaged off an anonymous
     * range ({@code MADV_NOHUGEPAGE}): population is then tracked page by page on any THP setting.
     * With THP {@code always} a 4 KiB write may otherwise populate a whole 2 MiB page, so the
     * kernel reports 511 untouched pages as populated (the classifier then reads them and finds
     * zeros: a zero run, never lost data, only slower).
     *
     * @param range part of an anonymous mapping
     */
    public static void adviseNoHugePages(MemorySegment range) {
        madvise(range, Libc.MADV_NOHUGEPAGE, "madvise(MADV_NOHUGEPAGE)", null);
    }

    /**
     * Drops the pages of a private anonymous range ({@code MADV_DONTNEED}): they read as zeros
     * afterwards and are no longer populated.
     *
     * @param range part of a private anonymous mapping
     */
    public static void dontNeed(MemorySegment range) {
        madvise(range, Libc.MADV_DONTNEED, "madvise(MADV_DONTNEED)", null);
    }

    /**
     * Drops the page-table entries of many ranges of one shared mapping ({@code MADV_DONTNEED}) in as few system calls
     * as the kernel allows: {@code process_madvise} on this process, up to 1024 ranges per call, one mmap-lock
     * acquisition and (Linux 6.16+) one TLB flush per call; one {@code madvise} per range where the kernel refuses
     * {@code MADV_DONTNEED} through {@code process_madvise} (before Linux 6.13). On a shared file mapping the pages stay
     * in the page cache: the next access maps them again (or raises a userfaultfd MINOR fault).
     *
     * @param addresses start addresses, page-aligned
     * @param lengths lengths in bytes, page multiples
     * @param count ranges to drop (the first {@code count} of each array)
     * @return system calls made
     */
    public static int dontNeedRanges(long[] addresses, long[] lengths, int count) {
        Linux.ensureAvailable();
        int calls = 0;
        int fd = ProcessMadvise.pidfd();
        if (fd >= 0) {
            MemorySegment iov = ProcessMadvise.IOV.get();
            int i = 0;
            while (i < count) {
                int n = Math.min(Libc.UIO_MAXIOV, count - i);
                long total = 0;
                for (int k = 0; k < n; k++) {
                    iov.set(java.lang.foreign.ValueLayout.JAVA_LONG, 16L * k, addresses[i + k]);
                    iov.set(java.lang.foreign.ValueLayout.JAVA_LONG, 16L * k + 8, lengths[i + k]);
                    total += lengths[i + k];
                }
                long done;
                try {
                    MemorySegment cap = Libc.capture();
                    done = (long) Libc.SYSCALL5.invokeExact(cap, Libc.SYS_PROCESS_MADVISE, (long) fd, iov.address(), (long) n,
                            (long) Libc.MADV_DONTNEED, 0L);
                    calls++;
                    if (done < 0) {
                        int errno = Libc.errno(cap);
                        if (errno == Libc.EINVAL && i == 0 && calls == 1) {
                            ProcessMadvise.refused();
                            break; // this kernel refuses MADV_DONTNEED here: one madvise per range below
                        }
                        if (errno == Libc.EINTR || errno == Libc.EAGAIN) {
                            continue;
                        }
                        throw Linux.failure("process_madvise(MADV_DONTNEED)", n + " ranges from 0x" + Long.toHexString(addresses[i]), errno, null);
                    }
                } catch (Throwable t) {
                    throw Linux.unexpected("process_madvise", t);
                }
                if (done == total) {
                    i += n;
                    continue;
                }
                // Stopped part way: skip the ranges done, shorten the one it stopped in.
                while (done >= lengths[i]) {
                    done -= lengths[i];
                    i++;
                }
                addresses[i] += done;
                lengths[i] -= done;
            }
            if (i >= count) {
                return calls;
            }
        }
        for (int i = 0; i < count; i++) {
            dontNeed(MemorySegment.ofAddress(addresses[i]).reinterpret(lengths[i]));
            calls++;
        }
        return calls;
    }

    /** This process's pidfd for {@code process_madvise}, opened once; -1 when the kernel has none or refuses the advice. */
    private static final class ProcessMadvise {
        private static volatile int pidfd = open();
        static final ThreadLocal<MemorySegment> IOV = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(16L * Libc.UIO_MAXIOV, 8));

        private static int open() {
            try {
                MemorySegment cap = Libc.capture();
                long fd = (long) Libc.SYSCALL5.invokeExact(cap, Libc.SYS_PIDFD_OPEN, ProcessHandle.current().pid(), 0L, 0L, 0L, 0L);
                return (int) fd; // -1 (ENOSYS, before Linux 5.3): madvise per range
            } catch (Throwable t) {
                throw Linux.unexpected("pidfd_open", t);
            }
        }

        static int pidfd() {
            return pidfd;
        }

        static void refused() {
            pidfd = -1; // the descriptor stays open for the process's life: one, never reused
        }
    }

    private static void madvise(MemorySegment range, int advice, String call, String advice2) {
        Linux.ensureAvailable();
        try {
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.MADVISE.invokeExact(cap, range.address(), range.byteSize(), advice);
            if (rc < 0) {
                throw Linux.failure(call, "[0x" + Long.toHexString(range.address()) + ", +" + range.byteSize() + ")", Libc.errno(cap),
                        advice2);
            }
        } catch (Throwable t) {
            throw Linux.unexpected(call, t);
        }
    }

    /**
     * Reads one byte of memory from native code and reports whether it was zero.
     *
     * <p>Use this, not a Java load, to touch memory registered with userfaultfd: a thread that
     * blocks in a page fault inside compiled Java code still counts as running Java, so every JVM
     * safepoint (GC, deoptimisation, even the first use of a VarHandle) waits for it, including
     * the safepoint the thread that would resolve the fault may be parked at: a deadlock. A thread
     * blocked inside a native call does not hold safepoints up. (Real vCPUs run in KVM, not in
     * the JVM.)
     *
     * @return true when the byte at {@code address} is zero
     */
    public static boolean touchIsZero(long address) {
        try {
            return (long) Libc.MEMCHR.invokeExact(address, 0, 1L) != 0;
        } catch (Throwable t) {
            throw Linux.unexpected("memchr", t);
        }
    }
}
