package io.pagewire.transport.tcp.net;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The C socket calls we use, as downcall handles, mirroring their C signatures (Linux, LP64).
 * errno is captured per call into a per-thread state segment, never a shared static one.
 * Package-private: {@link NativeSocket} is the intent-level API.
 */
final class Libc {
    private Libc() {
    }

    // <sys/socket.h>, <netinet/in.h>, <netinet/tcp.h>, <poll.h>: Linux values (same on x86_64 and aarch64).
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
    static final int SO_RCVTIMEO = 20;
    static final int SO_SNDTIMEO = 21;
    static final int SO_MAX_PACING_RATE = 47;
    static final int IPPROTO_IP = 0;
    static final int IP_TOS = 1;
    static final int IPPROTO_TCP = 6;
    static final int TCP_NODELAY = 1;
    static final int TCP_USER_TIMEOUT = 18;
    static final int TCP_NOTSENT_LOWAT = 25;
    static final int IPPROTO_IPV6 = 41;
    static final int IPV6_V6ONLY = 26;
    static final int IPV6_TCLASS = 67;
    static final int MSG_DONTWAIT = 0x40;
    static final int MSG_WAITALL = 0x100;
    static final int MSG_NOSIGNAL = 0x4000;
    static final int SHUT_RDWR = 2;
    static final short POLLIN = 1;
    static final int EINTR = 4;
    static final int EAGAIN = 11;
    static final int EINPROGRESS = 115;

    /** struct iovec { void *iov_base; size_t iov_len; } */
    static final long IOVEC_SIZE = 16;
    /** struct msghdr on LP64: name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad). */
    static final long MSGHDR_SIZE = 56;
    static final long MSGHDR_IOV = 16;
    static final long MSGHDR_IOVLEN = 24;

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
    static final MethodHandle GETTID = handle("gettid", FunctionDescriptor.of(JAVA_INT));
    static final MethodHandle SETPRIORITY = handle("setpriority", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    static final MethodHandle GETPRIORITY = handle("getpriority", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));

    static final int PRIO_PROCESS = 0;

    private static MethodHandle handle(String name, FunctionDescriptor fd) {
        MemorySegment symbol = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no symbol " + name));
        return LINKER.downcallHandle(symbol, fd, ERRNO);
    }

    /** @return this thread's capture segment, passed as the first argument of every call */
    static MemorySegment capture() {
        return CAPTURE.get();
    }

    /** @return errno of this thread's last call */
    static int errno(MemorySegment capture) {
        return (int) ERRNO_HANDLE.get(capture, 0L);
    }

    /** @return "ECONNRESET (Connection reset by peer)" style text for common socket errnos */
    static String describe(int errno) {
        return switch (errno) {
            case 1 -> "EPERM (Operation not permitted)";
            case 4 -> "EINTR (Interrupted system call)";
            case 9 -> "EBADF (Bad file descriptor)";
            case 11 -> "EAGAIN (Resource temporarily unavailable / timed out)";
            case 12 -> "ENOMEM (Cannot allocate memory)";
            case 13 -> "EACCES (Permission denied)";
            case 14 -> "EFAULT (Bad address)";
            case 22 -> "EINVAL (Invalid argument)";
            case 24 -> "EMFILE (Too many open files)";
            case 32 -> "EPIPE (Broken pipe)";
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

    static final ValueLayout.OfInt C_INT = JAVA_INT;
}
