package io.pagewire.ramtracker.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Locale;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The C calls and kernel ABI we use, mirrored as closely as Java allows (Linux, LP64: x86_64 and
 * aarch64), linked through pagewire's one native layer ({@link io.pagewire.linux.Libc}, module
 * io.pagewire.linux, which also captures errno per thread). The intent-level
 * classes of this package ({@link NativeFile}, {@link Mappings}, {@link Userfaultfd},
 * {@link PageMap}) are built on it.
 *
 * <p>errno is captured per call by the native layer into a per-thread state segment, never a
 * shared static one: a thread reads only what its own last call wrote. Small argument structs go
 * into a per-thread scratch segment for the same reason.
 *
 * <p>Debian 12's headers predate several constants we need (UFFD_FEATURE_WP_ASYNC, PAGEMAP_SCAN,
 * ...): they are defined here from the kernel's include/uapi/linux/userfaultfd.h and fs.h.
 */
final class Libc {
    private Libc() {
    }

    // ------------------------------------------------------------ <errno.h>
    static final int EPERM = 1;
    static final int ENOENT = 2;
    static final int EINTR = 4;
    static final int ENXIO = 6;
    static final int EAGAIN = 11;
    static final int ENOMEM = 12;
    static final int EFAULT = 14;
    static final int EEXIST = 17;
    static final int EINVAL = 22;
    static final int ENOTTY = 25;
    static final int ENOSYS = 38;
    static final int EOPNOTSUPP = 95;

    // ------------------------------------------------------------ <fcntl.h>, <unistd.h>
    static final int O_RDONLY = 0;
    static final int O_RDWR = 2;
    static final int O_CREAT = 0x40;
    static final int O_NONBLOCK = 0x800;
    static final int O_CLOEXEC = 0x80000;
    static final int SEEK_SET = 0;
    static final int SEEK_END = 2;
    static final int SEEK_DATA = 3;
    static final int SEEK_HOLE = 4;
    static final int FALLOC_FL_KEEP_SIZE = 0x01;
    static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    static final int SC_PAGESIZE = 30;

    // ------------------------------------------------------------ <linux/memfd.h>
    static final int MFD_CLOEXEC = 0x0001;
    static final int MFD_HUGETLB = 0x0004;
    /** MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT (26). */
    static final int MFD_HUGE_2MB = 21 << 26;

    // ------------------------------------------------------------ <sys/mman.h>
    static final int PROT_READ = 0x1;
    static final int PROT_WRITE = 0x2;
    static final int MAP_SHARED = 0x01;
    static final int MAP_PRIVATE = 0x02;
    static final int MAP_FIXED = 0x10;
    static final int MAP_ANONYMOUS = 0x20;
    static final int MAP_NORESERVE = 0x4000;
    static final long MAP_FAILED = -1L;
    static final int MADV_DONTNEED = 4;
    static final int MADV_REMOVE = 9;
    static final int MADV_HUGEPAGE = 14;
    static final int MADV_NOHUGEPAGE = 15;
    static final int MADV_POPULATE_WRITE = 23;

    // ------------------------------------------------------------ <sys/vfs.h>
    /** struct statfs on LP64 glibc: f_type (long) at 0, f_bsize (long) at 8; 120 bytes in all. */
    static final long STATFS_SIZE = 120;
    static final long STATFS_TYPE = 0;
    static final long STATFS_BSIZE = 8;
    static final long HUGETLBFS_MAGIC = 0x958458f6L;
    static final long TMPFS_MAGIC = 0x01021994L;

    // ------------------------------------------------------------ <sys/syscall.h>
    /** __NR_userfaultfd: 323 on x86_64, 282 on aarch64 (asm-generic). */
    static final long SYS_USERFAULTFD = switch (System.getProperty("os.arch", "").toLowerCase(Locale.ROOT)) {
        case "amd64", "x86_64" -> 323L;
        case "aarch64", "arm64" -> 282L;
        default -> -1L;
    };
    /** __NR_pidfd_open and __NR_process_madvise: the same on x86_64 and asm-generic (aarch64). */
    static final long SYS_PIDFD_OPEN = 434L;
    static final long SYS_PROCESS_MADVISE = 440L;
    /** UIO_MAXIOV: most iovecs per process_madvise call. */
    static final int UIO_MAXIOV = 1024;

    // ------------------------------------------------------------ <linux/userfaultfd.h>
    static final long UFFD_API = 0xAA;
    static final int UFFD_USER_MODE_ONLY = 1;
    /** _IOWR(0xAA, 0x3F, struct uffdio_api) with sizeof = 24. */
    static final long UFFDIO_API = iowr(0xAA, 0x3F, 24);
    /** _IOWR(0xAA, 0x00, struct uffdio_register) with sizeof = 32. */
    static final long UFFDIO_REGISTER = iowr(0xAA, 0x00, 32);
    /** _IOR(0xAA, 0x01, struct uffdio_range) with sizeof = 16. */
    static final long UFFDIO_UNREGISTER = ior(0xAA, 0x01, 16);
    /** _IOR(0xAA, 0x02, struct uffdio_range). */
    static final long UFFDIO_WAKE = ior(0xAA, 0x02, 16);
    /** _IOWR(0xAA, 0x03, struct uffdio_copy) with sizeof = 40. */
    static final long UFFDIO_COPY = iowr(0xAA, 0x03, 40);
    /** _IOWR(0xAA, 0x04, struct uffdio_zeropage) with sizeof = 32. */
    static final long UFFDIO_ZEROPAGE = iowr(0xAA, 0x04, 32);
    /** _IOWR(0xAA, 0x06, struct uffdio_writeprotect) with sizeof = 24. */
    static final long UFFDIO_WRITEPROTECT = iowr(0xAA, 0x06, 24);
    /** _IOWR(0xAA, 0x07, struct uffdio_continue) with sizeof = 32. */
    static final long UFFDIO_CONTINUE = iowr(0xAA, 0x07, 32);
    static final long UFFDIO_WRITEPROTECT_MODE_WP = 1;
    static final long UFFDIO_COPY_MODE_DONTWAKE = 1;
    /** UFFDIO_COPY_MODE_WP and UFFDIO_CONTINUE_MODE_WP (6.5+ for CONTINUE): the placed page is write-protected. */
    static final long UFFDIO_PLACE_MODE_WP = 2;

    // ------------------------------------------------------------ <linux/fs.h> (6.7+)
    /** struct pm_scan_arg: twelve __u64 fields. */
    static final long PM_SCAN_ARG_SIZE = 96;
    /** struct page_region: start, end, categories. */
    static final long PAGE_REGION_SIZE = 24;
    /** _IOWR('f', 16, struct pm_scan_arg). */
    static final long PAGEMAP_SCAN = iowr('f', 16, PM_SCAN_ARG_SIZE);
    static final long PM_SCAN_WP_MATCHING = 1L << 0;
    static final long PM_SCAN_CHECK_WPASYNC = 1L << 1;
    static final long PAGE_IS_WPALLOWED = 1L << 0;
    static final long PAGE_IS_WRITTEN = 1L << 1;
    static final long PAGE_IS_FILE = 1L << 2;
    static final long PAGE_IS_PRESENT = 1L << 3;
    static final long PAGE_IS_SWAPPED = 1L << 4;
    static final long PAGE_IS_PFNZERO = 1L << 5;

    /** _IOC(dir, type, nr, size) with the generic (x86_64, aarch64) encoding. */
    private static long ioc(long dir, long type, long nr, long size) {
        return (dir << 30) | (size << 16) | (type << 8) | nr;
    }

    private static long iowr(long type, long nr, long size) {
        return ioc(3, type, nr, size);
    }

    private static long ior(long type, long nr, long size) {
        return ioc(2, type, nr, size);
    }

    // ------------------------------------------------------------ linking

    /** Why linking failed, or null when every handle below was created. */
    static final String LINK_FAILURE;

    static final MethodHandle MEMFD_CREATE;
    static final MethodHandle OPEN;
    static final MethodHandle CLOSE;
    static final MethodHandle FTRUNCATE;
    static final MethodHandle FALLOCATE;
    static final MethodHandle LSEEK;
    static final MethodHandle FSTATFS;
    static final MethodHandle MMAP;
    static final MethodHandle MUNMAP;
    static final MethodHandle MADVISE;
    static final MethodHandle IOCTL;
    static final MethodHandle SYSCALL1;
    static final MethodHandle SYSCALL5;
    static final MethodHandle SYSCONF;
    static final MethodHandle READ;
    static final MethodHandle POLL;
    static final MethodHandle MEMCHR;
    static final MethodHandle MEMCPY;
    static final MethodHandle MEMCMP;


    static {
        String failure = null;
        MethodHandle memfd = null, open = null, close = null, ftruncate = null, fallocate = null, lseek = null, fstatfs = null,
                mmap = null, munmap = null, madvise = null, ioctl = null, syscall = null, syscall5 = null, sysconf = null, read = null, poll = null,
                memchr = null, memcpy = null, memcmp = null;
        try {
            memfd = link("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
            // int open(const char *path, int flags, ...): mode is the variadic third argument.
            open = link("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT),
                    Linker.Option.firstVariadicArg(2));
            close = link("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
            ftruncate = link("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
            fallocate = link("fallocate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
            lseek = link("lseek", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
            fstatfs = link("fstatfs", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
            mmap = link("mmap", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
            munmap = link("munmap", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
            madvise = link("madvise", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
            // int ioctl(int fd, unsigned long request, ...): we always pass one pointer.
            ioctl = link("ioctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS),
                    Linker.Option.firstVariadicArg(2));
            // long syscall(long number, ...): one long argument.
            syscall = link("syscall", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG),
                    Linker.Option.firstVariadicArg(1));
            syscall5 = link("syscall", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
                    Linker.Option.firstVariadicArg(1));
            sysconf = link("sysconf", FunctionDescriptor.of(JAVA_LONG, JAVA_INT));
            read = link("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
            poll = link("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
            // Deliberately not a critical call: the thread must be "in native" while it may block in a page fault.
            memchr = io.pagewire.linux.Libc.linkWithoutErrno("memchr", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG));
            // The same for memcpy and memcmp (NativeMemory): a fault inside them blocks a thread in native.
            memcpy = io.pagewire.linux.Libc.linkWithoutErrno("memcpy", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
            memcmp = io.pagewire.linux.Libc.linkWithoutErrno("memcmp", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        } catch (IllegalCallerException e) {
            failure = "native access is not enabled for " + moduleName() + " (" + e.getMessage() + "); add "
                    + nativeAccessFlag() + " to the java command line";
        } catch (LinkageError | UnsupportedOperationException | IllegalArgumentException e) {
            failure = "cannot link the C library calls pagewire needs on " + System.getProperty("os.name") + "/"
                    + System.getProperty("os.arch") + ": " + e.getMessage() + " (pagewire's RAM tracker needs Linux on x86_64 or aarch64)";
        }
        LINK_FAILURE = failure;
        MEMFD_CREATE = memfd;
        OPEN = open;
        CLOSE = close;
        FTRUNCATE = ftruncate;
        FALLOCATE = fallocate;
        LSEEK = lseek;
        FSTATFS = fstatfs;
        MMAP = mmap;
        MUNMAP = munmap;
        MADVISE = madvise;
        IOCTL = ioctl;
        SYSCALL1 = syscall;
        SYSCALL5 = syscall5;
        SYSCONF = sysconf;
        READ = read;
        POLL = poll;
        MEMCHR = memchr;
        MEMCPY = memcpy;
        MEMCMP = memcmp;
    }

    /** Links through the one native layer (module io.pagewire.linux), errno captured. */
    private static MethodHandle link(String name, FunctionDescriptor fd, Linker.Option... options) {
        return io.pagewire.linux.Libc.link(name, fd, options);
    }

    /** @return the modules that need native access (the native layer links, this one maps), or "the unnamed module" */
    static String moduleName() {
        Module m = Libc.class.getModule();
        return m.isNamed() ? "modules " + io.pagewire.linux.Libc.class.getModule().getName() + " and " + m.getName()
                : "the unnamed module (class path)";
    }

    /** @return the {@code --enable-native-access=...} flag that enables native access for this code and the native layer */
    static String nativeAccessFlag() {
        Module m = Libc.class.getModule();
        return "--enable-native-access=" + (m.isNamed() ? io.pagewire.linux.Libc.class.getModule().getName() + "," + m.getName() : "ALL-UNNAMED");
    }

    // ------------------------------------------------------------ per-thread state

    /** Per-thread scratch area for small argument structs: each thread reads only what its own calls wrote. */
    private static final ThreadLocal<MemorySegment> SCRATCH = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(256, 16));

    /** @return this thread's errno capture segment (the native layer's), passed as the first argument of every call */
    static MemorySegment capture() {
        return io.pagewire.linux.Libc.capture();
    }

    /**
     * @return this thread's 256-byte scratch segment for argument structs; valid until this
     *         thread's next call that uses it (callers use it for one call and read the results at once)
     */
    static MemorySegment scratch() {
        return SCRATCH.get();
    }

    /** @return errno of this thread's last call */
    static int errno(MemorySegment capture) {
        return io.pagewire.linux.Libc.errno(capture);
    }
}
