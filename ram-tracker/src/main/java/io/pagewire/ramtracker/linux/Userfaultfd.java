package io.pagewire.ramtracker.linux;

import io.pagewire.ramtracker.RamTrackerException;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A userfaultfd: the kernel object through which a process write-protects its own memory (dirty
 * tracking, snapshots) or resolves missing/minor faults (postcopy placement).
 *
 * <p>Intent-level operations: {@link #register}, {@link #writeProtect}, {@link #copy},
 * {@link #zeroPage}, {@link #continueRange}, {@link #wake}. Reading fault messages is not
 * offered here yet (postcopy fault capture is a later issue); the descriptor is opened
 * non-blocking so that a poller can be added without changing it.
 *
 * <p>Threading: the ioctls are thread-safe in the kernel; every method may be called from any
 * thread. {@link #close()} only after the users stopped.
 */
public final class Userfaultfd implements AutoCloseable {

    /** Write-protect faults carry a WP flag (UFFD_FEATURE_PAGEFAULT_FLAG_WP). */
    public static final long FEATURE_PAGEFAULT_FLAG_WP = 1L << 0;
    /** MISSING faults on hugetlbfs. */
    public static final long FEATURE_MISSING_HUGETLBFS = 1L << 4;
    /** MISSING faults on shmem (memfd, tmpfs). */
    public static final long FEATURE_MISSING_SHMEM = 1L << 5;
    /** Fault messages carry the faulting thread id. */
    public static final long FEATURE_THREAD_ID = 1L << 8;
    /** MINOR faults (page in page cache, not mapped) on hugetlbfs. */
    public static final long FEATURE_MINOR_HUGETLBFS = 1L << 9;
    /** MINOR faults on shmem: UFFDIO_CONTINUE over a second mapping of a memfd. */
    public static final long FEATURE_MINOR_SHMEM = 1L << 10;
    /** Write-protection of hugetlbfs and shmem (memfd, tmpfs). */
    public static final long FEATURE_WP_HUGETLBFS_SHMEM = 1L << 12;
    /** Write-protecting a range also protects its not yet populated pages (Linux 6.4+). */
    public static final long FEATURE_WP_UNPOPULATED = 1L << 13;
    /** Write faults on protected pages resolve in the kernel, recording "written" (Linux 6.7+). */
    public static final long FEATURE_WP_ASYNC = 1L << 15;

    /** Register for MISSING faults (pages never populated). */
    public static final int MODE_MISSING = 1;
    /** Register for write-protection. */
    public static final int MODE_WP = 2;
    /** Register for MINOR faults (page cached but not mapped here). */
    public static final int MODE_MINOR = 4;

    private static final Probe PROBE = Probe.run();

    private final int fd;
    private final long features;
    private final boolean userModeOnly;
    private final AtomicBoolean closed = new AtomicBoolean();

    private Userfaultfd(int fd, long features, boolean userModeOnly) {
        this.fd = fd;
        this.features = features;
        this.userModeOnly = userModeOnly;
    }

    /** Probed once: the features this kernel offers, or why userfaultfd cannot be used. */
    private record Probe(long features, String cause) {
        static Probe run() {
            if (!Linux.isAvailable()) {
                return new Probe(0, Linux.unavailabilityCause());
            }
            try {
                // A userfaultfd accepts one UFFDIO_API call: ask for no feature to learn what is offered.
                Userfaultfd probe = create(0);
                probe.close();
                return new Probe(probe.features, null);
            } catch (RamTrackerException e) {
                return new Probe(0, e.getMessage());
            }
        }
    }

    /**
     * @return why userfaultfd cannot be used here (naming the missing piece and the fix), or
     *         null when it can
     */
    public static String unavailabilityCause() {
        return PROBE.cause;
    }

    /** @return true when userfaultfd can be opened here */
    public static boolean isAvailable() {
        return PROBE.cause == null;
    }

    /** @return the features this kernel offers (0 when userfaultfd is unavailable) */
    public static long availableFeatures() {
        return PROBE.features;
    }

    /**
     * @param required features that must all be offered
     * @return null when all are offered, else a sentence naming the missing ones
     */
    public static String missingFeatures(long required) {
        if (PROBE.cause != null) {
            return PROBE.cause;
        }
        long missing = required & ~PROBE.features;
        return missing == 0 ? null : "this kernel's userfaultfd lacks " + featureNames(missing);
    }

    /** @return "UFFD_FEATURE_WP_ASYNC (Linux 6.7+), ..." for the bits set */
    public static String featureNames(long features) {
        StringBuilder sb = new StringBuilder();
        for (long bit = 1; bit != 0; bit <<= 1) {
            if ((features & bit) != 0) {
                if (!sb.isEmpty()) {
                    sb.append(", ");
                }
                sb.append(featureName(bit));
            }
        }
        return sb.toString();
    }

    private static String featureName(long bit) {
        if (bit == FEATURE_PAGEFAULT_FLAG_WP) {
            return "UFFD_FEATURE_PAGEFAULT_FLAG_WP (Linux 5.7+)";
        } else if (bit == FEATURE_MISSING_HUGETLBFS) {
            return "UFFD_FEATURE_MISSING_HUGETLBFS";
        } else if (bit == FEATURE_MISSING_SHMEM) {
            return "UFFD_FEATURE_MISSING_SHMEM";
        } else if (bit == FEATURE_THREAD_ID) {
            return "UFFD_FEATURE_THREAD_ID";
        } else if (bit == FEATURE_MINOR_HUGETLBFS) {
            return "UFFD_FEATURE_MINOR_HUGETLBFS (Linux 5.13+)";
        } else if (bit == FEATURE_MINOR_SHMEM) {
            return "UFFD_FEATURE_MINOR_SHMEM (Linux 5.14+)";
        } else if (bit == FEATURE_WP_HUGETLBFS_SHMEM) {
            return "UFFD_FEATURE_WP_HUGETLBFS_SHMEM (Linux 5.19+)";
        } else if (bit == FEATURE_WP_UNPOPULATED) {
            return "UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+)";
        } else if (bit == FEATURE_WP_ASYNC) {
            return "UFFD_FEATURE_WP_ASYNC (Linux 6.7+)";
        }
        return "UFFD_FEATURE bit " + Long.numberOfTrailingZeros(bit);
    }

    /**
     * Opens a userfaultfd with the given features enabled (close-on-exec, non-blocking).
     *
     * @param features FEATURE_* bits to enable; all must be offered ({@link #missingFeatures})
     * @return the userfaultfd
     */
    public static Userfaultfd open(long features) {
        String missing = missingFeatures(features);
        if (missing != null) {
            throw new RamTrackerException("cannot open a userfaultfd with " + featureNames(features) + ": " + missing);
        }
        return create(features);
    }

    private static Userfaultfd create(long features) {
        Linux.ensureAvailable();
        try {
            MemorySegment cap = Libc.capture();
            boolean userModeOnly = false;
            long fd = (long) Libc.SYSCALL1.invokeExact(cap, Libc.SYS_USERFAULTFD, (long) (Libc.O_CLOEXEC | Libc.O_NONBLOCK));
            if (fd < 0 && Libc.errno(cap) == Libc.EPERM) {
                // Unprivileged processes may only handle faults raised in user mode
                // (vm.unprivileged_userfaultfd = 0). That is enough for write tracking of memory
                // the guest writes from user space; kernel-mode faults would see SIGBUS.
                fd = (long) Libc.SYSCALL1.invokeExact(cap, Libc.SYS_USERFAULTFD,
                        (long) (Libc.O_CLOEXEC | Libc.O_NONBLOCK | Libc.UFFD_USER_MODE_ONLY));
                userModeOnly = true;
            }
            if (fd < 0) {
                int errno = Libc.errno(cap);
                throw Linux.failure("userfaultfd", "", errno, switch (errno) {
                    case Libc.ENOSYS -> "this kernel is built without CONFIG_USERFAULTFD";
                    case Libc.EPERM -> "run with CAP_SYS_PTRACE or set sysctl vm.unprivileged_userfaultfd=1";
                    default -> null;
                });
            }
            Userfaultfd uffd = new Userfaultfd((int) fd, 0, userModeOnly);
            MemorySegment api = Libc.scratch();
            api.set(JAVA_LONG, 0, Libc.UFFD_API);
            api.set(JAVA_LONG, 8, features);
            api.set(JAVA_LONG, 16, 0L);
            int rc = (int) Libc.IOCTL.invokeExact(cap, (int) fd, Libc.UFFDIO_API, api);
            if (rc < 0) {
                int errno = Libc.errno(cap);
                uffd.close();
                throw Linux.failure("ioctl(UFFDIO_API)", "features " + featureNames(features), errno,
                        "this kernel does not offer every requested feature");
            }
            // The kernel answers with every feature it offers.
            return new Userfaultfd((int) fd, api.get(JAVA_LONG, 8), userModeOnly);
        } catch (Throwable t) {
            throw Linux.unexpected("userfaultfd", t);
        }
    }

    /** @return the features the kernel reported for this descriptor (all it offers) */
    public long features() {
        return features;
    }

    /** @return true when only user-mode faults are handled (unprivileged process) */
    public boolean userModeOnly() {
        return userModeOnly;
    }

    /** @return the descriptor number */
    public int fd() {
        return fd;
    }

    /**
     * Registers a range ({@code UFFDIO_REGISTER}).
     *
     * @param range page-aligned part of a mapping
     * @param modes MODE_* bits
     * @return the ioctls the kernel allows on the range (bit n = ioctl number n)
     */
    public long register(MemorySegment range, int modes) {
        MemorySegment arg = Libc.scratch();
        arg.set(JAVA_LONG, 0, range.address());
        arg.set(JAVA_LONG, 8, range.byteSize());
        arg.set(JAVA_LONG, 16, modes);
        arg.set(JAVA_LONG, 24, 0L);
        ioctl(Libc.UFFDIO_REGISTER, arg, "ioctl(UFFDIO_REGISTER)", range, "modes " + modes,
                "the mapping type may not support this mode (write-protecting shmem needs Linux 5.19+, MINOR needs shmem/hugetlbfs)");
        return arg.get(JAVA_LONG, 24);
    }

    /**
     * Unregisters a range ({@code UFFDIO_UNREGISTER}); write-protection on it ends.
     *
     * @param range a registered range
     */
    public void unregister(MemorySegment range) {
        rangeIoctl(Libc.UFFDIO_UNREGISTER, range, "ioctl(UFFDIO_UNREGISTER)");
    }

    /**
     * Write-protects a range or removes the protection ({@code UFFDIO_WRITEPROTECT}).
     *
     * @param range part of a range registered with {@link #MODE_WP}
     * @param protect true to protect, false to unprotect (and wake waiters)
     */
    public void writeProtect(MemorySegment range, boolean protect) {
        MemorySegment arg = Libc.scratch();
        arg.set(JAVA_LONG, 0, range.address());
        arg.set(JAVA_LONG, 8, range.byteSize());
        arg.set(JAVA_LONG, 16, protect ? Libc.UFFDIO_WRITEPROTECT_MODE_WP : 0L);
        ioctl(Libc.UFFDIO_WRITEPROTECT, arg, "ioctl(UFFDIO_WRITEPROTECT)", range, protect ? "protect" : "unprotect", null);
    }

    /**
     * Atomically fills missing pages with a copy of {@code source} ({@code UFFDIO_COPY}), waking
     * threads waiting on them unless {@code wake} is false.
     *
     * @param destination page-aligned range registered with {@link #MODE_MISSING}
     * @param source bytes to copy, at least as long as {@code destination}
     * @param wake wake waiting threads
     * @return bytes copied
     */
    public long copy(MemorySegment destination, MemorySegment source, boolean wake) {
        if (source.byteSize() < destination.byteSize()) {
            throw new IllegalArgumentException("UFFDIO_COPY source (" + source.byteSize() + " bytes) is shorter than the destination ("
                    + destination.byteSize() + " bytes)");
        }
        MemorySegment arg = Libc.scratch();
        arg.set(JAVA_LONG, 0, destination.address());
        arg.set(JAVA_LONG, 8, source.address());
        arg.set(JAVA_LONG, 16, destination.byteSize());
        arg.set(JAVA_LONG, 24, wake ? 0L : Libc.UFFDIO_COPY_MODE_DONTWAKE);
        arg.set(JAVA_LONG, 32, 0L);
        ioctl(Libc.UFFDIO_COPY, arg, "ioctl(UFFDIO_COPY)", destination, "", "EEXIST means the page is already populated");
        return arg.get(JAVA_LONG, 32);
    }

    /**
     * Maps zero pages into missing pages ({@code UFFDIO_ZEROPAGE}), waking waiters.
     *
     * @param destination page-aligned range registered with {@link #MODE_MISSING}
     * @return bytes zeroed
     */
    public long zeroPage(MemorySegment destination) {
        MemorySegment arg = Libc.scratch();
        arg.set(JAVA_LONG, 0, destination.address());
        arg.set(JAVA_LONG, 8, destination.byteSize());
        arg.set(JAVA_LONG, 16, 0L);
        arg.set(JAVA_LONG, 24, 0L);
        ioctl(Libc.UFFDIO_ZEROPAGE, arg, "ioctl(UFFDIO_ZEROPAGE)", destination, "", null);
        return arg.get(JAVA_LONG, 24);
    }

    /**
     * Maps pages that are already in the page cache into a range registered for MINOR faults
     * ({@code UFFDIO_CONTINUE}), waking waiters: postcopy writes a page through a second mapping
     * of the memfd, then continues it here with no extra copy.
     *
     * @param range page-aligned range registered with {@link #MODE_MINOR}
     * @return bytes mapped
     */
    public long continueRange(MemorySegment range) {
        MemorySegment arg = Libc.scratch();
        arg.set(JAVA_LONG, 0, range.address());
        arg.set(JAVA_LONG, 8, range.byteSize());
        arg.set(JAVA_LONG, 16, 0L);
        arg.set(JAVA_LONG, 24, 0L);
        ioctl(Libc.UFFDIO_CONTINUE, arg, "ioctl(UFFDIO_CONTINUE)", range, "", "the pages must already be in the page cache");
        return arg.get(JAVA_LONG, 24);
    }

    /**
     * Wakes threads waiting on faults in a range ({@code UFFDIO_WAKE}).
     *
     * @param range the range
     */
    public void wake(MemorySegment range) {
        rangeIoctl(Libc.UFFDIO_WAKE, range, "ioctl(UFFDIO_WAKE)");
    }

    private void rangeIoctl(long request, MemorySegment range, String call) {
        MemorySegment arg = Libc.scratch();
        arg.set(JAVA_LONG, 0, range.address());
        arg.set(JAVA_LONG, 8, range.byteSize());
        ioctl(request, arg, call, range, "", null);
    }

    private void ioctl(long request, MemorySegment arg, String call, MemorySegment range, String detail, String advice) {
        if (closed.get()) {
            throw new RamTrackerException(call + " on a closed userfaultfd (fd " + fd + ")");
        }
        try {
            MemorySegment cap = Libc.capture();
            int rc;
            do {
                rc = (int) Libc.IOCTL.invokeExact(cap, fd, request, arg);
            } while (rc < 0 && Libc.errno(cap) == Libc.EINTR);
            if (rc < 0) {
                throw Linux.failure(call, "[0x" + Long.toHexString(range.address()) + ", +" + range.byteSize() + ")"
                        + (detail.isEmpty() ? "" : " " + detail), Libc.errno(cap), advice);
            }
        } catch (Throwable t) {
            throw Linux.unexpected(call, t);
        }
    }

    // ------------------------------------------------------------ fault events (postcopy)

    /** Size of one {@code struct uffd_msg}. */
    public static final int MSG_SIZE = 32;
    /** {@code UFFD_EVENT_PAGEFAULT}. */
    public static final int EVENT_PAGEFAULT = 0x12;
    /** Fault flags: {@code UFFD_PAGEFAULT_FLAG_WRITE}, {@code _WP}, {@code _MINOR}. */
    public static final long FAULT_FLAG_WRITE = 1, FAULT_FLAG_WP = 2, FAULT_FLAG_MINOR = 4;

    /**
     * Waits up to {@code timeoutMs} for fault events and reads as many as fit in {@code buf}.
     *
     * <pre>
     * struct uffd_msg (32 bytes):  0 event (u8) | 1..7 reserved | 8 flags (u64) | 16 address (u64) | 24 ptid (u32) | 28 pad
     * </pre>
     *
     * @param buf room for messages, a multiple of {@link #MSG_SIZE}
     * @return messages read (0 on timeout)
     */
    public int readEvents(MemorySegment buf, int timeoutMs) {
        if (closed.get()) {
            throw new RamTrackerException("read on a closed userfaultfd (fd " + fd + ")");
        }
        try {
            MemorySegment cap = Libc.capture();
            MemorySegment pfd = Libc.scratch();
            pfd.set(java.lang.foreign.ValueLayout.JAVA_INT, 0, fd);
            pfd.set(java.lang.foreign.ValueLayout.JAVA_SHORT, 4, (short) 1); // POLLIN
            pfd.set(java.lang.foreign.ValueLayout.JAVA_SHORT, 6, (short) 0);
            int rc = (int) Libc.POLL.invokeExact(cap, pfd, 1L, timeoutMs);
            if (rc < 0) {
                int errno = Libc.errno(cap);
                if (errno == Libc.EINTR) {
                    return 0;
                }
                throw Linux.failure("poll", "userfaultfd " + fd, errno, null);
            }
            if (rc == 0) {
                return 0;
            }
            long n = (long) Libc.READ.invokeExact(cap, fd, buf, buf.byteSize() - buf.byteSize() % MSG_SIZE);
            if (n < 0) {
                int errno = Libc.errno(cap);
                if (errno == Libc.EAGAIN || errno == Libc.EINTR) {
                    return 0; // another reader took them, or a signal
                }
                throw Linux.failure("read", "userfaultfd " + fd, errno, null);
            }
            return (int) (n / MSG_SIZE);
        } catch (Throwable t) {
            throw Linux.unexpected("read(userfaultfd)", t);
        }
    }

    /** @return the event type of message {@code i} */
    public static int event(MemorySegment buf, int i) {
        return buf.get(java.lang.foreign.ValueLayout.JAVA_BYTE, (long) i * MSG_SIZE) & 0xff;
    }

    /** @return the faulting address of page-fault message {@code i} */
    public static long faultAddress(MemorySegment buf, int i) {
        return buf.get(JAVA_LONG, (long) i * MSG_SIZE + 16);
    }

    /** @return the flags of page-fault message {@code i} */
    public static long faultFlags(MemorySegment buf, int i) {
        return buf.get(JAVA_LONG, (long) i * MSG_SIZE + 8);
    }

    /** @return the faulting thread's id of message {@code i} (needs {@link #FEATURE_THREAD_ID}) */
    public static int faultThreadId(MemorySegment buf, int i) {
        return buf.get(java.lang.foreign.ValueLayout.JAVA_INT, (long) i * MSG_SIZE + 24);
    }

    /** @return the calling thread's kernel thread id (what {@link #faultThreadId} reports) */
    public static int currentThreadId() {
        return io.pagewire.linux.ThreadTuning.tid();
    }

    /**
     * Places pages atomically, skipping those already present: {@code UFFDIO_COPY} (source data)
     * or {@code UFFDIO_CONTINUE} (source null: the pages are already in the page cache), page range
     * by page range. A page another thread placed first ({@code EEXIST}) is left alone: postcopy
     * answers a fault and pushes in the background, and whichever lands first wins.
     *
     * @param destination page-aligned range in the registered mapping
     * @param source data for {@code UFFDIO_COPY}, or null for {@code UFFDIO_CONTINUE}
     * @param pageSize page size
     * @return pages placed by this call (the rest already were)
     */
    public long place(MemorySegment destination, MemorySegment source, long pageSize) {
        return place(destination, source, pageSize, false);
    }

    /**
     * As {@link #place(MemorySegment, MemorySegment, long)}, the pages placed write-protected when {@code writeProtect}
     * ({@code UFFDIO_COPY_MODE_WP}, {@code UFFDIO_CONTINUE_MODE_WP} (Linux 6.5+)): on a range also registered with
     * {@link #MODE_WP} the first write to a placed page then raises a write-protect fault, so a tracker of writes that
     * fills pages lazily keeps seeing every write.
     *
     * @param destination page-aligned range in the registered mapping
     * @param source data for {@code UFFDIO_COPY}, or null for {@code UFFDIO_CONTINUE}
     * @param pageSize page size
     * @param writeProtect place the pages write-protected
     * @return pages placed by this call (the rest already were)
     */
    public long place(MemorySegment destination, MemorySegment source, long pageSize, boolean writeProtect) {
        long mode = writeProtect ? Libc.UFFDIO_PLACE_MODE_WP : 0L;
        long placed = 0;
        long off = 0;
        long size = destination.byteSize();
        while (off < size) {
            MemorySegment arg = Libc.scratch();
            long request;
            if (source != null) {
                arg.set(JAVA_LONG, 0, destination.address() + off);
                arg.set(JAVA_LONG, 8, source.address() + off);
                arg.set(JAVA_LONG, 16, size - off);
                arg.set(JAVA_LONG, 24, mode);
                arg.set(JAVA_LONG, 32, 0L);
                request = Libc.UFFDIO_COPY;
            } else {
                arg.set(JAVA_LONG, 0, destination.address() + off);
                arg.set(JAVA_LONG, 8, size - off);
                arg.set(JAVA_LONG, 16, mode);
                arg.set(JAVA_LONG, 24, 0L);
                request = Libc.UFFDIO_CONTINUE;
            }
            int errno = ioctlErrno(request, arg);
            long done = arg.get(JAVA_LONG, source != null ? 32 : 24);
            if (errno == 0) {
                placed += (size - off) / pageSize;
                break;
            }
            if (errno == Libc.EAGAIN) {
                // Interrupted part way (mapping changes): go on from where it stopped.
                if (done > 0) {
                    placed += done / pageSize;
                    off += done;
                }
                continue;
            }
            if (errno != Libc.EEXIST) {
                throw Linux.failure(source != null ? "ioctl(UFFDIO_COPY)" : "ioctl(UFFDIO_CONTINUE)",
                        "[0x" + Long.toHexString(destination.address() + off) + ", +" + (size - off) + ")", errno,
                        source != null ? null : "the pages must already be in the page cache");
            }
            // EEXIST: 'done' bytes were placed, then a page that is already there; skip it.
            long skip = Math.max(0, done);
            placed += skip / pageSize;
            off += skip + pageSize;
        }
        return placed;
    }

    /** Runs an ioctl; returns 0 or the errno (EINTR retried). */
    private int ioctlErrno(long request, MemorySegment arg) {
        if (closed.get()) {
            throw new RamTrackerException("ioctl on a closed userfaultfd (fd " + fd + ")");
        }
        try {
            MemorySegment cap = Libc.capture();
            int rc;
            do {
                rc = (int) Libc.IOCTL.invokeExact(cap, fd, request, arg);
            } while (rc < 0 && Libc.errno(cap) == Libc.EINTR);
            return rc < 0 ? Libc.errno(cap) : 0;
        } catch (Throwable t) {
            throw Linux.unexpected("ioctl(userfaultfd)", t);
        }
    }

    /** Closes the descriptor; registrations on it end. Idempotent. */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.CLOSE.invokeExact(cap, fd);
            if (rc < 0) {
                throw Linux.failure("close", "userfaultfd " + fd, Libc.errno(cap), null);
            }
        } catch (Throwable t) {
            throw Linux.unexpected("close", t);
        }
    }
}
