package io.pagewire.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The C calls the transports use, as downcall handles mirroring their C signatures (Linux, LP64:
 * x86_64 and aarch64). The only class of the transport side that touches {@link Linker}. errno is
 * captured per call into a per-thread state segment, never a shared static one: a thread reads
 * only what its own last call wrote. Package-private: {@link NativeSocket}, {@link FileDescriptors}
 * and {@link ThreadTuning} are the intent-level API.
 */
public final class Libc {
    private Libc() {
    }

    // <sys/socket.h>, <sys/un.h>, <netinet/in.h>, <netinet/tcp.h>, <poll.h>: Linux values (same on x86_64 and aarch64).
    static final int AF_UNIX = 1;
    static final int AF_INET = 2;
    static final int AF_INET6 = 10;
    static final int SOCK_STREAM = 1;
    static final int SOCK_CLOEXEC = 0x80000;
    static final int SOL_SOCKET = 1;
    static final int SO_REUSEADDR = 2;
    static final int SO_SNDBUF = 7;
    static final int SO_RCVBUF = 8;
    static final int SO_KEEPALIVE = 9;
    static final int SO_PRIORITY = 12;
    static final int SO_PEERCRED = 17;
    static final int SO_RCVTIMEO = 20;
    static final int SO_SNDTIMEO = 21;
    static final int SO_MAX_PACING_RATE = 47;
    static final int SCM_RIGHTS = 1;
    static final int IPPROTO_IP = 0;
    static final int IP_TOS = 1;
    static final int IPPROTO_TCP = 6;
    static final int TCP_NODELAY = 1;
    static final int TCP_USER_TIMEOUT = 18;
    static final int TCP_NOTSENT_LOWAT = 25;
    static final int IPPROTO_IPV6 = 41;
    static final int IPV6_V6ONLY = 26;
    static final int IPV6_TCLASS = 67;
    static final int MSG_CTRUNC = 0x8;
    static final int MSG_DONTWAIT = 0x40;
    static final int MSG_WAITALL = 0x100;
    static final int MSG_NOSIGNAL = 0x4000;
    static final int MSG_CMSG_CLOEXEC = 0x40000000;
    static final int SHUT_RDWR = 2;
    static final short POLLIN = 1;
    static final int EINTR = 4;
    static final int EAGAIN = 11;
    static final int EINPROGRESS = 115;
    /** {@code sizeof(sockaddr_un.sun_path)}: a path takes at most 107 bytes and a NUL. */
    static final int SUN_PATH_BYTES = 108;

    /** struct iovec { void *iov_base; size_t iov_len; } */
    static final long IOVEC_SIZE = 16;
    /** struct msghdr on LP64: name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad). */
    static final long MSGHDR_SIZE = 56;
    static final long MSGHDR_IOV = 16;
    static final long MSGHDR_IOVLEN = 24;
    static final long MSGHDR_CONTROL = 32;
    static final long MSGHDR_CONTROLLEN = 40;
    static final long MSGHDR_FLAGS = 48;
    /** struct cmsghdr on LP64: len (size_t), level (int), type (int), then data. */
    static final long CMSG_HEADER = 16;

    // <sys/stat.h>, <fcntl.h>: statx is the same on every architecture (struct stat is not).
    static final int AT_EMPTY_PATH = 0x1000;
    static final int STATX_TYPE = 0x1;
    static final int STATX_SIZE = 0x200;
    static final long STATX_SIZE_BYTES = 256;
    static final long STATX_MODE = 28;   // u16 stx_mode
    static final long STATX_SIZE_AT = 40; // u64 stx_size
    static final int S_IFMT = 0xF000;
    static final int S_IFREG = 0x8000;
    static final int MFD_CLOEXEC = 0x1;
    static final int PROT_READ = 0x1;
    static final int PROT_WRITE = 0x2;
    static final int MAP_SHARED = 0x1;

    // <sys/resource.h>, <sys/prctl.h>
    static final int PRIO_PROCESS = 0;
    static final int PR_SET_TIMERSLACK = 29;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final Linker.Option ERRNO = Linker.Option.captureCallState("errno");
    private static final MemoryLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO_HANDLE =
            CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    /** Per-thread errno capture state: each thread reads only what its own calls wrote. */
    private static final ThreadLocal<MemorySegment> CAPTURE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE_LAYOUT));

    static final MethodHandle SOCKET = handle("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    static final MethodHandle SETSOCKOPT = handle("setsockopt", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    static final MethodHandle GETSOCKOPT = handle("getsockopt", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    static final MethodHandle BIND = handle("bind", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    static final MethodHandle LISTEN = handle("listen", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    static final MethodHandle ACCEPT4 = handle("accept4", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT));
    static final MethodHandle CONNECT = handle("connect", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    static final MethodHandle GETSOCKNAME = handle("getsockname", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    static final MethodHandle GETPEERNAME = handle("getpeername", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    static final MethodHandle SHUTDOWN = handle("shutdown", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    static final MethodHandle CLOSE = handle("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    static final MethodHandle RECV = handle("recv", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    static final MethodHandle SEND = handle("send", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    static final MethodHandle SENDMSG = handle("sendmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    static final MethodHandle RECVMSG = handle("recvmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    static final MethodHandle POLL = handle("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    static final MethodHandle UNLINK = handle("unlink", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    static final MethodHandle STATX = handle("statx", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS));
    static final MethodHandle MEMFD_CREATE = handle("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    static final MethodHandle FTRUNCATE = handle("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    static final MethodHandle MMAP = handle("mmap", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    static final MethodHandle MUNMAP = handle("munmap", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
    static final MethodHandle GETTID = handle("gettid", FunctionDescriptor.of(JAVA_INT));
    static final MethodHandle SETPRIORITY = handle("setpriority", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    static final MethodHandle GETPRIORITY = handle("getpriority", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    static final MethodHandle PRCTL = handle("prctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG), Linker.Option.firstVariadicArg(1));
    /**
     * {@code syscall(SYS_sched_setattr, pid, attr, flags)}: glibc before 2.41 has no wrapper, so the
     * number comes from {@link #SCHED_SETATTR_NR} (the only system call number of this package).
     */
    static final MethodHandle SYSCALL3 = handle("syscall",
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_LONG), Linker.Option.firstVariadicArg(1));
    /** sched_setattr's number: asm-generic (aarch64, riscv64) 274, x86_64 314. */
    static final long SCHED_SETATTR_NR = System.getProperty("os.arch", "").equals("amd64")
            || System.getProperty("os.arch", "").equals("x86_64") ? 314 : 274;

    private static MethodHandle handle(String name, FunctionDescriptor fd, Linker.Option... more) {
        Linker.Option[] options = new Linker.Option[more.length + 1];
        options[0] = ERRNO;
        System.arraycopy(more, 0, options, 1, more.length);
        return downcall(name, fd, options);
    }

    @SuppressWarnings("restricted") // the one place of pagewire that links C calls
    private static MethodHandle downcall(String name, FunctionDescriptor fd, Linker.Option... options) {
        MemorySegment symbol = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("the C library has no symbol " + name));
        return LINKER.downcallHandle(symbol, fd, options);
    }

    /**
     * Links a C library call for another pagewire module (the RAM tracker's mappings, userfaultfd and
     * pagemap calls): errno is captured, so the handle takes {@link #capture()} as its first argument.
     *
     * @param name the symbol
     * @param fd its C signature
     * @param more further options (e.g. {@code Linker.Option.firstVariadicArg})
     * @return the downcall handle
     * @throws UnsatisfiedLinkError when the C library has no such symbol
     */
    public static MethodHandle link(String name, FunctionDescriptor fd, Linker.Option... more) {
        return handle(name, fd, more);
    }

    /**
     * Links a C library call that sets no errno worth reading (memchr, memcpy, memcmp). Deliberately not a
     * critical call: the thread stays "in native" while it may block in a page fault (userfaultfd).
     */
    public static MethodHandle linkWithoutErrno(String name, FunctionDescriptor fd) {
        return downcall(name, fd);
    }

    /** @return this thread's capture segment, passed as the first argument of every call */
    public static MemorySegment capture() {
        return CAPTURE.get();
    }

    /** @return errno of this thread's last call */
    public static int errno(MemorySegment capture) {
        return (int) ERRNO_HANDLE.get(capture, 0L);
    }

    /** @return "ECONNRESET (Connection reset by peer)" style text for the errnos these calls return */
    static String describe(int errno) {
        return switch (errno) {
            case 1 -> "EPERM (Operation not permitted)";
            case 2 -> "ENOENT (No such file or directory)";
            case 4 -> "EINTR (Interrupted system call)";
            case 9 -> "EBADF (Bad file descriptor)";
            case 11 -> "EAGAIN (Resource temporarily unavailable / timed out)";
            case 12 -> "ENOMEM (Cannot allocate memory)";
            case 13 -> "EACCES (Permission denied)";
            case 14 -> "EFAULT (Bad address)";
            case 19 -> "ENODEV (No such device)";
            case 22 -> "EINVAL (Invalid argument)";
            case 24 -> "EMFILE (Too many open files)";
            case 32 -> "EPIPE (Broken pipe)";
            case 38 -> "ENOSYS (Function not implemented)";
            case 88 -> "ENOTSOCK (Socket operation on non-socket)";
            case 92 -> "ENOPROTOOPT (Protocol not available)";
            case 97 -> "EAFNOSUPPORT (Address family not supported)";
            case 98 -> "EADDRINUSE (Address already in use)";
            case 99 -> "EADDRNOTAVAIL (Cannot assign requested address)";
            case 100 -> "ENETDOWN (Network is down)";
            case 101 -> "ENETUNREACH (Network is unreachable)";
            case 103 -> "ECONNABORTED (Software caused connection abort)";
            case 104 -> "ECONNRESET (Connection reset by peer)";
            case 107 -> "ENOTCONN (Transport endpoint is not connected)";
            case 110 -> "ETIMEDOUT (Connection timed out)";
            case 111 -> "ECONNREFUSED (Connection refused)";
            case 113 -> "EHOSTUNREACH (No route to host)";
            case 115 -> "EINPROGRESS (Operation now in progress)";
            default -> "errno " + errno;
        };
    }

    /** Rethrows what a downcall threw: its declared exceptions as they are, anything else as a bug. */
    static IllegalStateException unexpected(String call, Throwable t) {
        return new IllegalStateException(call + ": unexpected failure of the downcall", t);
    }
}
