package io.pagewire.linux;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A blocking stream socket driven through Panama, TCP (IPv4, IPv6) or unix domain: the calls Java's
 * NIO does not offer (TCP_NOTSENT_LOWAT, TCP_USER_TIMEOUT, SO_PRIORITY, SCM_RIGHTS) and
 * scatter/gather straight from and into native memory (guest RAM) with no intermediate buffer.
 * On a unix socket the TCP and IP options are refused with an {@link IllegalStateException}.
 *
 * <h2>Threading and closing</h2>
 * One thread may send and another receive at the same time. {@link #shutdown()} may be called
 * from any thread: it wakes every thread blocked on this socket (their calls fail). The file
 * descriptor is released only by {@link #close()}, which must be called after the threads that
 * use the socket have stopped, so that a recycled descriptor number is never read by mistake.
 */
public final class NativeSocket implements AutoCloseable {
    private final int fd;
    private final int family;
    private final AtomicBoolean shutdown = new AtomicBoolean();
    private final AtomicBoolean closed = new AtomicBoolean();
    /** A record layer (TLS) every data call goes through once {@link #secure} installed it; null: the bytes go as they are. */
    private volatile Layer layer;

    /**
     * A record layer over this socket (TLS): once installed, the data calls ({@code send*}, {@code recv*},
     * {@link #pollReadable}) go through it, and it moves its own bytes with {@link #rawSendFully},
     * {@link #rawRecvSome} and {@link #rawPollReadable}. Its threading is the socket's: one thread
     * may send while another receives.
     */
    public interface Layer {
        /** As {@link NativeSocket#sendFully}. */
        void sendFully(MemorySegment data, long offset, long length) throws IOException;

        /** As {@link NativeSocket#sendvFully}: gathers the {@code count} iovecs of {@code iov}. */
        void sendv(MemorySegment iov, int count, long totalBytes) throws IOException;

        /** As {@link NativeSocket#recvFully}. */
        long recvFully(MemorySegment dst, long offset, long length) throws IOException;

        /** As {@link NativeSocket#recvvFully}: scatters into the {@code count} iovecs of {@code iov}. */
        void recvv(MemorySegment iov, int count, long totalBytes) throws IOException;

        /** As {@link NativeSocket#recvSome}. */
        long recvSome(MemorySegment dst, long offset, long length) throws IOException;

        /** As {@link NativeSocket#pollReadable}: true when the layer has bytes for the caller. */
        boolean pollReadable(long timeoutMs) throws IOException;

        /** Ends this side's sending in order (TLS: close_notify), so the peer can tell the end from a cut. */
        default void closeOutbound() throws IOException {
        }
    }

    private NativeSocket(int fd, int family) {
        this.fd = fd;
        this.family = family;
    }

    /** @return true for a unix domain socket */
    public boolean isUnix() {
        return family == Libc.AF_UNIX;
    }

    /**
     * Installs a record layer: from now on every data call goes through it. Call before the socket
     * is shared with other threads (the handshake thread that made the layer installs it).
     */
    public void secure(Layer layer) {
        if (this.layer != null) {
            throw new IllegalStateException("a record layer is already installed on " + this);
        }
        this.layer = layer;
    }

    /** @return whether a record layer (TLS) carries this socket's data */
    public boolean isSecured() {
        return layer != null;
    }

    /** @return the file descriptor (for diagnostics) */
    public int fd() {
        return fd;
    }

    // ---------------------------------------------------------------- setup

    /**
     * Connects to {@code address}, failing after {@code timeoutMs}.
     *
     * @throws IOException with the errno text (ECONNREFUSED, ETIMEDOUT, ...)
     */
    public static NativeSocket connect(InetSocketAddress address, long timeoutMs) throws IOException {
        InetAddress ip = resolve(address);
        boolean v6 = ip instanceof Inet6Address;
        NativeSocket s = open(v6);
        try (Arena arena = Arena.ofConfined()) {
            // Linux honours SO_SNDTIMEO for a blocking connect().
            s.sendTimeoutMs(timeoutMs);
            MemorySegment sa = sockaddr(arena, ip, address.getPort());
            MemorySegment cap = Libc.capture();
            int rc;
            do {
                rc = (int) Libc.CONNECT.invokeExact(cap, s.fd, sa, (int) sa.byteSize());
            } while (rc < 0 && Libc.errno(cap) == Libc.EINTR);
            if (rc < 0) {
                int errno = Libc.errno(cap);
                throw new ErrnoException("connect", errno, "to " + address
                        + (errno == Libc.EINPROGRESS || errno == Libc.EAGAIN ? " (no answer within " + timeoutMs + " ms)" : ""));
            }
            s.sendTimeoutMs(0);
            return s;
        } catch (IOException | RuntimeException | Error e) {
            s.close();
            throw e;
        } catch (Throwable t) {
            s.close();
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Binds and listens.
     *
     * @param address where (port 0: any free port)
     * @param backlog accept queue length
     */
    public static NativeSocket listen(InetSocketAddress address, int backlog) throws IOException {
        InetAddress ip = resolve(address);
        boolean v6 = ip instanceof Inet6Address;
        NativeSocket s = open(v6);
        try (Arena arena = Arena.ofConfined()) {
            s.setInt(Libc.SOL_SOCKET, Libc.SO_REUSEADDR, 1, "SO_REUSEADDR");
            MemorySegment sa = sockaddr(arena, ip, address.getPort());
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.BIND.invokeExact(cap, s.fd, sa, (int) sa.byteSize());
            if (rc < 0) {
                throw new ErrnoException("bind", Libc.errno(cap), "to " + address);
            }
            rc = (int) Libc.LISTEN.invokeExact(cap, s.fd, backlog);
            if (rc < 0) {
                throw new ErrnoException("listen", Libc.errno(cap), "on " + address);
            }
            return s;
        } catch (IOException | RuntimeException | Error e) {
            s.close();
            throw e;
        } catch (Throwable t) {
            s.close();
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Accepts one connection.
     *
     * @param timeoutMs how long to wait; negative waits for ever
     * @return the connection, or null on timeout
     * @throws IOException when the socket was shut down or accept failed
     */
    public NativeSocket accept(long timeoutMs) throws IOException {
        if (!pollReadable(timeoutMs)) {
            return null;
        }
        MemorySegment cap = Libc.capture();
        try {
            int rc;
            do {
                rc = (int) Libc.ACCEPT4.invokeExact(cap, fd, MemorySegment.NULL, MemorySegment.NULL, Libc.SOCK_CLOEXEC);
            } while (rc < 0 && Libc.errno(cap) == Libc.EINTR);
            if (rc < 0) {
                int errno = Libc.errno(cap);
                if (errno == Libc.EAGAIN) {
                    return null;
                }
                throw new ErrnoException("accept", errno, "on fd " + fd + (shutdown.get() ? " (listener shut down)" : ""));
            }
            return new NativeSocket(rc, family);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    private static NativeSocket open(boolean v6) throws IOException {
        return open(v6 ? Libc.AF_INET6 : Libc.AF_INET);
    }

    private static NativeSocket open(int family) throws IOException {
        MemorySegment cap = Libc.capture();
        try {
            int fd = (int) Libc.SOCKET.invokeExact(cap, family, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
            if (fd < 0) {
                throw new ErrnoException("socket", Libc.errno(cap), family == Libc.AF_UNIX ? "(AF_UNIX)"
                        : family == Libc.AF_INET6 ? "(AF_INET6)" : "(AF_INET)");
            }
            return new NativeSocket(fd, family);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    private static InetAddress resolve(InetSocketAddress address) throws UnknownHostException {
        if (address.isUnresolved()) {
            return InetAddress.getByName(address.getHostString());
        }
        return address.getAddress();
    }

    private static MemorySegment sockaddr(Arena arena, InetAddress ip, int port) {
        if (ip instanceof Inet4Address) {
            MemorySegment sa = arena.allocate(16);
            sa.set(ValueLayout.JAVA_SHORT, 0, (short) Libc.AF_INET);
            sa.set(ValueLayout.JAVA_BYTE, 2, (byte) (port >>> 8));
            sa.set(ValueLayout.JAVA_BYTE, 3, (byte) port);
            MemorySegment.copy(ip.getAddress(), 0, sa, ValueLayout.JAVA_BYTE, 4, 4);
            return sa;
        }
        Inet6Address v6 = (Inet6Address) ip;
        MemorySegment sa = arena.allocate(28);
        sa.set(ValueLayout.JAVA_SHORT, 0, (short) Libc.AF_INET6);
        sa.set(ValueLayout.JAVA_BYTE, 2, (byte) (port >>> 8));
        sa.set(ValueLayout.JAVA_BYTE, 3, (byte) port);
        MemorySegment.copy(v6.getAddress(), 0, sa, ValueLayout.JAVA_BYTE, 8, 16);
        sa.set(ValueLayout.JAVA_INT, 24, v6.getScopeId());
        return sa;
    }

    /** @return the local address (e.g. the port a port-0 listener got; TCP only) */
    public InetSocketAddress localAddress() throws IOException {
        requireInet("a local address");
        return name(Libc.GETSOCKNAME, "getsockname");
    }

    /**
     * @return how messages name the peer: its address and port, or for a unix socket the peer
     *         process (SO_PEERCRED)
     */
    public String peerName() throws IOException {
        if (!isUnix()) {
            return remoteAddress().toString();
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cred = arena.allocate(12, 4); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
            MemorySegment len = arena.allocate(ValueLayout.JAVA_INT);
            len.set(ValueLayout.JAVA_INT, 0, 12);
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.GETSOCKOPT.invokeExact(cap, fd, Libc.SOL_SOCKET, Libc.SO_PEERCRED, cred, len);
            if (rc < 0) {
                throw new ErrnoException("getsockopt", Libc.errno(cap), "SO_PEERCRED");
            }
            return "unix peer pid " + cred.get(ValueLayout.JAVA_INT, 0) + " uid " + cred.get(ValueLayout.JAVA_INT, 4);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("getsockopt", t);
        }
    }

    /** @return the peer's address (TCP only) */
    public InetSocketAddress remoteAddress() throws IOException {
        requireInet("a peer address");
        return name(Libc.GETPEERNAME, "getpeername");
    }

    private InetSocketAddress name(java.lang.invoke.MethodHandle call, String what) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sa = arena.allocate(128);
            MemorySegment len = arena.allocate(ValueLayout.JAVA_INT);
            len.set(ValueLayout.JAVA_INT, 0, 128);
            MemorySegment cap = Libc.capture();
            int rc = (int) call.invokeExact(cap, fd, sa, len);
            if (rc < 0) {
                throw new ErrnoException(what, Libc.errno(cap), "on fd " + fd);
            }
            int family = sa.get(ValueLayout.JAVA_SHORT, 0);
            int port = ((sa.get(ValueLayout.JAVA_BYTE, 2) & 0xff) << 8) | (sa.get(ValueLayout.JAVA_BYTE, 3) & 0xff);
            byte[] addr;
            if (family == Libc.AF_INET) {
                addr = sa.asSlice(4, 4).toArray(ValueLayout.JAVA_BYTE);
                return new InetSocketAddress(InetAddress.getByAddress(addr), port);
            }
            addr = sa.asSlice(8, 16).toArray(ValueLayout.JAVA_BYTE);
            return new InetSocketAddress(Inet6Address.getByAddress(null, addr, sa.get(ValueLayout.JAVA_INT, 24)), port);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    // ---------------------------------------------------------------- unix domain

    /**
     * Connects to the unix domain socket at {@code path}.
     *
     * @throws IOException with the errno text (ENOENT: nobody listens there; ECONNREFUSED: the listener is gone)
     */
    public static NativeSocket connect(Path path) throws IOException {
        NativeSocket s = open(Libc.AF_UNIX);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sa = sockaddrUn(arena, path);
            MemorySegment cap = Libc.capture();
            int rc;
            do {
                rc = (int) Libc.CONNECT.invokeExact(cap, s.fd, sa, (int) sa.byteSize());
            } while (rc < 0 && Libc.errno(cap) == Libc.EINTR);
            if (rc < 0) {
                throw new ErrnoException("connect", Libc.errno(cap), "to unix socket " + path);
            }
            return s;
        } catch (IOException | RuntimeException | Error e) {
            s.close();
            throw e;
        } catch (Throwable t) {
            s.close();
            throw Libc.unexpected("connect", t);
        }
    }

    /**
     * Binds a unix domain socket at {@code path} (which must not exist: a stale socket file is the
     * caller's to remove) and listens.
     */
    public static NativeSocket listen(Path path, int backlog) throws IOException {
        NativeSocket s = open(Libc.AF_UNIX);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sa = sockaddrUn(arena, path);
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.BIND.invokeExact(cap, s.fd, sa, (int) sa.byteSize());
            if (rc < 0) {
                throw new ErrnoException("bind", Libc.errno(cap), "to unix socket " + path);
            }
            rc = (int) Libc.LISTEN.invokeExact(cap, s.fd, backlog);
            if (rc < 0) {
                throw new ErrnoException("listen", Libc.errno(cap), "on unix socket " + path);
            }
            return s;
        } catch (IOException | RuntimeException | Error e) {
            s.close();
            throw e;
        } catch (Throwable t) {
            s.close();
            throw Libc.unexpected("listen", t);
        }
    }

    /** @return the longest unix socket path, in bytes of UTF-8 */
    public static int maxUnixPathBytes() {
        return Libc.SUN_PATH_BYTES - 1;
    }

    private static MemorySegment sockaddrUn(Arena arena, Path path) {
        byte[] name = path.toString().getBytes(StandardCharsets.UTF_8);
        if (name.length == 0 || name.length > maxUnixPathBytes()) {
            throw new IllegalArgumentException("unix socket path '" + path + "' is " + name.length + " bytes; expected 1.."
                    + maxUnixPathBytes() + " (sockaddr_un)");
        }
        MemorySegment sa = arena.allocate(2 + Libc.SUN_PATH_BYTES, 2); // zeroed: the path ends with a NUL
        sa.set(ValueLayout.JAVA_SHORT, 0, (short) Libc.AF_UNIX);
        MemorySegment.copy(name, 0, sa, ValueLayout.JAVA_BYTE, 2, name.length);
        return sa;
    }

    /**
     * Sends {@code data} (at least one byte) with file descriptors attached (SCM_RIGHTS, unix sockets
     * only): the peer receives its own descriptors for the same open files. The whole of {@code data}
     * is sent; the descriptors travel with its first byte.
     *
     * @param fds at most {@link #MAX_FDS} descriptors, kept open here (the caller still owns them)
     */
    public void sendWithFds(MemorySegment data, int[] fds) throws IOException {
        if (!isUnix()) {
            throw new IllegalStateException("descriptors travel only over unix sockets, not fd " + fd);
        }
        if (fds.length < 1 || fds.length > MAX_FDS || data.byteSize() < 1) {
            throw new IllegalArgumentException(fds.length + " descriptors with " + data.byteSize() + " bytes; expected 1.."
                    + MAX_FDS + " with at least one byte");
        }
        try (Arena arena = Arena.ofConfined()) {
            long controlLen = Libc.CMSG_HEADER + align8(4L * fds.length);
            MemorySegment control = arena.allocate(controlLen, 8);
            control.set(ValueLayout.JAVA_LONG, 0, Libc.CMSG_HEADER + 4L * fds.length); // cmsg_len = CMSG_LEN(n * 4)
            control.set(ValueLayout.JAVA_INT, 8, Libc.SOL_SOCKET);
            control.set(ValueLayout.JAVA_INT, 12, Libc.SCM_RIGHTS);
            MemorySegment.copy(fds, 0, control, ValueLayout.JAVA_INT, Libc.CMSG_HEADER, fds.length);
            MemorySegment msg = msghdr(arena, data, 0, data.byteSize(), control);
            MemorySegment cap = Libc.capture();
            long n;
            do {
                n = (long) Libc.SENDMSG.invokeExact(cap, fd, msg, Libc.MSG_NOSIGNAL);
            } while (n < 0 && Libc.errno(cap) == Libc.EINTR);
            if (n < 0) {
                throw new ErrnoException("sendmsg", Libc.errno(cap), "of " + fds.length + " descriptors");
            }
            if (n < data.byteSize()) {
                sendFully(data, n, data.byteSize() - n);
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("sendmsg", t);
        }
    }

    /**
     * Receives exactly {@code length} bytes, and the descriptors that came with them (close-on-exec).
     * Descriptors beyond {@code maxFds}, or truncated control data, close every received descriptor and
     * fail: a peer cannot make us hold descriptors we did not ask for.
     *
     * @return the received descriptors (possibly none), owned by the caller
     * @throws EOFException when the peer closed first
     */
    public int[] recvWithFds(MemorySegment dst, long offset, long length, int maxFds) throws IOException {
        if (maxFds < 1 || maxFds > MAX_FDS) {
            throw new IllegalArgumentException("maxFds " + maxFds + " outside 1.." + MAX_FDS);
        }
        try (Arena arena = Arena.ofConfined()) {
            long controlLen = Libc.CMSG_HEADER + align8(4L * maxFds);
            MemorySegment control = arena.allocate(controlLen, 8);
            MemorySegment msg = msghdr(arena, dst, offset, length, control);
            MemorySegment cap = Libc.capture();
            long n;
            do {
                n = (long) Libc.RECVMSG.invokeExact(cap, fd, msg, Libc.MSG_CMSG_CLOEXEC);
            } while (n < 0 && Libc.errno(cap) == Libc.EINTR);
            if (n < 0) {
                throw new ErrnoException("recvmsg", Libc.errno(cap), "with descriptors" + (shutdown.get() ? " (socket shut down)" : ""));
            }
            int[] fds = receivedFds(control, msg.get(ValueLayout.JAVA_LONG, Libc.MSGHDR_CONTROLLEN));
            boolean truncated = (msg.get(ValueLayout.JAVA_INT, Libc.MSGHDR_FLAGS) & Libc.MSG_CTRUNC) != 0;
            try {
                if (truncated || fds.length > maxFds) {
                    throw new IOException("the peer sent more than " + maxFds + " descriptors"
                            + (truncated ? " (control data truncated)" : " (" + fds.length + ")"));
                }
                if (n == 0) {
                    throw new EOFException("connection closed by the peer before " + length + " bytes with descriptors arrived");
                }
                if (n < length && recvFully(dst, offset + n, length - n) < 0) {
                    throw new EOFException("connection closed by the peer after " + n + " of " + length + " bytes");
                }
            } catch (IOException | RuntimeException e) {
                for (int f : fds) {
                    FileDescriptors.close(f);
                }
                throw e;
            }
            return fds;
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("recvmsg", t);
        }
    }

    /** @return a msghdr for one buffer and a control area (ancillary data), allocated in {@code arena} */
    private static MemorySegment msghdr(Arena arena, MemorySegment data, long offset, long length, MemorySegment control) {
        MemorySegment iov = arena.allocate(Libc.IOVEC_SIZE, 8);
        iovec(iov, 0, data, offset, length);
        MemorySegment msg = arena.allocate(Libc.MSGHDR_SIZE, 8);
        msg.set(ValueLayout.ADDRESS, Libc.MSGHDR_IOV, iov);
        msg.set(ValueLayout.JAVA_LONG, Libc.MSGHDR_IOVLEN, 1);
        msg.set(ValueLayout.ADDRESS, Libc.MSGHDR_CONTROL, control);
        msg.set(ValueLayout.JAVA_LONG, Libc.MSGHDR_CONTROLLEN, control.byteSize());
        return msg;
    }

    /** Most descriptors one message carries (Linux's SCM_MAX_FD is 253). */
    public static final int MAX_FDS = 253;

    private static int[] receivedFds(MemorySegment control, long controlLen) {
        int[] out = new int[0];
        long off = 0;
        while (off + Libc.CMSG_HEADER <= controlLen) {
            long len = control.get(ValueLayout.JAVA_LONG, off);
            int level = control.get(ValueLayout.JAVA_INT, off + 8);
            int type = control.get(ValueLayout.JAVA_INT, off + 12);
            if (len < Libc.CMSG_HEADER || off + len > controlLen) {
                break;
            }
            if (level == Libc.SOL_SOCKET && type == Libc.SCM_RIGHTS) {
                int n = (int) ((len - Libc.CMSG_HEADER) / 4);
                int[] more = new int[out.length + n];
                System.arraycopy(out, 0, more, 0, out.length);
                MemorySegment.copy(control, ValueLayout.JAVA_INT, off + Libc.CMSG_HEADER, more, out.length, n);
                out = more;
            }
            off += align8(len);
        }
        return out;
    }

    private static long align8(long n) {
        return (n + 7) & ~7L;
    }

    private void requireInet(String what) {
        if (family == Libc.AF_UNIX) {
            throw new IllegalStateException(what + " is a TCP/IP option; fd " + fd + " is a unix domain socket");
        }
    }

    // ---------------------------------------------------------------- options

    /** TCP_NODELAY: send small frames at once. */
    public void noDelay(boolean on) throws IOException {
        requireInet("noDelay");
        setInt(Libc.IPPROTO_TCP, Libc.TCP_NODELAY, on ? 1 : 0, "TCP_NODELAY");
    }

    /** SO_SNDBUF in bytes (the kernel doubles it). */
    public void sendBufferBytes(int bytes) throws IOException {
        setInt(Libc.SOL_SOCKET, Libc.SO_SNDBUF, bytes, "SO_SNDBUF");
    }

    /** SO_RCVBUF in bytes (the kernel doubles it). */
    public void receiveBufferBytes(int bytes) throws IOException {
        setInt(Libc.SOL_SOCKET, Libc.SO_RCVBUF, bytes, "SO_RCVBUF");
    }

    /**
     * TCP_NOTSENT_LOWAT: keep at most this many unsent bytes queued in the socket, so a bulk
     * stream leaves short queues behind it.
     */
    public void notSentLowatBytes(int bytes) throws IOException {
        requireInet("notSentLowatBytes");
        setInt(Libc.IPPROTO_TCP, Libc.TCP_NOTSENT_LOWAT, bytes, "TCP_NOTSENT_LOWAT");
    }

    /** TCP_USER_TIMEOUT: unacknowledged data older than this fails the connection. */
    public void userTimeoutMs(int ms) throws IOException {
        requireInet("userTimeoutMs");
        setInt(Libc.IPPROTO_TCP, Libc.TCP_USER_TIMEOUT, ms, "TCP_USER_TIMEOUT");
    }

    /** SO_KEEPALIVE. */
    public void keepAlive(boolean on) throws IOException {
        setInt(Libc.SOL_SOCKET, Libc.SO_KEEPALIVE, on ? 1 : 0, "SO_KEEPALIVE");
    }

    /**
     * Marks outgoing packets: the IP TOS byte (IPv4) or traffic class (IPv6), i.e. DSCP &lt;&lt; 2.
     *
     * @param dscp DSCP code point 0..63 (46 = EF, expedited forwarding)
     */
    public void dscp(int dscp) throws IOException {
        requireInet("DSCP marking");
        if (family == Libc.AF_INET6) {
            setInt(Libc.IPPROTO_IPV6, Libc.IPV6_TCLASS, dscp << 2, "IPV6_TCLASS");
        } else {
            setInt(Libc.IPPROTO_IP, Libc.IP_TOS, dscp << 2, "IP_TOS");
        }
    }

    /** SO_PRIORITY: the queueing priority of this socket's packets on the local host (0..6 unprivileged). */
    public void priority(int priority) throws IOException {
        setInt(Libc.SOL_SOCKET, Libc.SO_PRIORITY, priority, "SO_PRIORITY");
    }

    /**
     * SO_MAX_PACING_RATE: the kernel paces this socket's data at most at this rate (TCP paces
     * internally when no fq qdisc does), so a bulk stream held below the bottleneck's rate leaves
     * no standing queue there.
     *
     * @param bytesPerSecond the cap, bytes per second (64-bit value)
     */
    public void maxPacingRate(long bytesPerSecond) throws IOException {
        setOption(Libc.SOL_SOCKET, Libc.SO_MAX_PACING_RATE, bytesPerSecond, 8, "SO_MAX_PACING_RATE");
    }

    /** SO_RCVTIMEO: a blocking receive fails with EAGAIN after this long (0 = never). */
    public void receiveTimeoutMs(long ms) throws IOException {
        setTimeval(Libc.SO_RCVTIMEO, ms, "SO_RCVTIMEO");
    }

    /** SO_SNDTIMEO: a blocking send fails with EAGAIN after this long (0 = never). */
    public void sendTimeoutMs(long ms) throws IOException {
        setTimeval(Libc.SO_SNDTIMEO, ms, "SO_SNDTIMEO");
    }

    /** @return an int socket option's current value */
    public int getInt(int level, int option, String name) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(ValueLayout.JAVA_INT);
            MemorySegment len = arena.allocate(ValueLayout.JAVA_INT);
            len.set(ValueLayout.JAVA_INT, 0, 4);
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.GETSOCKOPT.invokeExact(cap, fd, level, option, v, len);
            if (rc < 0) {
                throw new ErrnoException("getsockopt", Libc.errno(cap), name);
            }
            return v.get(ValueLayout.JAVA_INT, 0);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /** @return SO_SNDBUF as the kernel set it */
    public int sendBufferBytes() throws IOException {
        return getInt(Libc.SOL_SOCKET, Libc.SO_SNDBUF, "SO_SNDBUF");
    }

    private void setInt(int level, int option, int value, String name) throws IOException {
        setOption(level, option, value, 4, name);
    }

    /** Sets a 4- or 8-byte (native order) socket option. */
    private void setOption(int level, int option, long value, int bytes, String name) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(8, 8);
            if (bytes == 8) {
                v.set(ValueLayout.JAVA_LONG, 0, value);
            } else {
                v.set(ValueLayout.JAVA_INT, 0, (int) value);
            }
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.SETSOCKOPT.invokeExact(cap, fd, level, option, v, bytes);
            if (rc < 0) {
                throw new ErrnoException("setsockopt", Libc.errno(cap), name + "=" + value);
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    private void setTimeval(int option, long ms, String name) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment tv = arena.allocate(16, 8);
            tv.set(ValueLayout.JAVA_LONG, 0, ms / 1000);
            tv.set(ValueLayout.JAVA_LONG, 8, (ms % 1000) * 1000);
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.SETSOCKOPT.invokeExact(cap, fd, Libc.SOL_SOCKET, option, tv, 16);
            if (rc < 0) {
                throw new ErrnoException("setsockopt", Libc.errno(cap), name + "=" + ms + "ms");
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    // ---------------------------------------------------------------- data

    /**
     * Sends all of {@code [address, address + length)}.
     *
     * @throws IOException on any error, naming the errno (EPIPE, ECONNRESET, EAGAIN on send timeout)
     */
    public void sendFully(MemorySegment data, long offset, long length) throws IOException {
        Layer l = layer;
        if (l != null) {
            l.sendFully(data, offset, length);
            return;
        }
        rawSendFully(data, offset, length);
    }

    /** {@link #sendFully} on the socket itself, under any record layer (for the layer's own bytes). */
    public void rawSendFully(MemorySegment data, long offset, long length) throws IOException {
        MemorySegment cap = Libc.capture();
        long done = 0;
        try {
            while (done < length) {
                long n = (long) Libc.SEND.invokeExact(cap, fd, data.asSlice(offset + done, length - done), length - done, Libc.MSG_NOSIGNAL);
                if (n < 0) {
                    int errno = Libc.errno(cap);
                    if (errno == Libc.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("send", errno, "of " + length + " bytes" + (shutdown.get() ? " (socket shut down)" : ""));
                }
                done += n;
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Gathers and sends {@code count} iovecs from {@code iov} (a native array of
     * {@code struct iovec}) totalling {@code totalBytes}. The iovec array is modified to
     * track partial sends; {@code msghdr} is scratch space of {@link #MSGHDR_BYTES}.
     */
    public void sendvFully(MemorySegment msghdr, MemorySegment iov, int count, long totalBytes) throws IOException {
        Layer l = layer;
        if (l != null) {
            l.sendv(iov, count, totalBytes);
            return;
        }
        rawSendvFully(msghdr, iov, count, totalBytes);
    }

    private void rawSendvFully(MemorySegment msghdr, MemorySegment iov, int count, long totalBytes) throws IOException {
        MemorySegment cap = Libc.capture();
        msghdr.fill((byte) 0);
        int first = 0;
        long remaining = totalBytes;
        try {
            while (remaining > 0) {
                msghdr.set(ValueLayout.ADDRESS, Libc.MSGHDR_IOV, iov.asSlice(first * Libc.IOVEC_SIZE));
                msghdr.set(ValueLayout.JAVA_LONG, Libc.MSGHDR_IOVLEN, Math.min(count - first, 1024)); // IOV_MAX
                long n = (long) Libc.SENDMSG.invokeExact(cap, fd, msghdr, Libc.MSG_NOSIGNAL);
                if (n < 0) {
                    int errno = Libc.errno(cap);
                    if (errno == Libc.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("sendmsg", errno, "of " + remaining + " bytes" + (shutdown.get() ? " (socket shut down)" : ""));
                }
                remaining -= n;
                first = advance(iov, first, count, n);
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Receives exactly {@code totalBytes} scattered over {@code count} iovecs (modified to track
     * partial receives); {@code msghdr} is scratch space of {@link #MSGHDR_BYTES}.
     *
     * @throws EOFException when the peer closed before all arrived
     */
    public void recvvFully(MemorySegment msghdr, MemorySegment iov, int count, long totalBytes) throws IOException {
        Layer l = layer;
        if (l != null) {
            l.recvv(iov, count, totalBytes);
            return;
        }
        rawRecvvFully(msghdr, iov, count, totalBytes);
    }

    private void rawRecvvFully(MemorySegment msghdr, MemorySegment iov, int count, long totalBytes) throws IOException {
        MemorySegment cap = Libc.capture();
        msghdr.fill((byte) 0);
        int first = 0;
        long remaining = totalBytes;
        try {
            while (remaining > 0) {
                msghdr.set(ValueLayout.ADDRESS, Libc.MSGHDR_IOV, iov.asSlice(first * Libc.IOVEC_SIZE));
                msghdr.set(ValueLayout.JAVA_LONG, Libc.MSGHDR_IOVLEN, Math.min(count - first, 1024));
                long n = (long) Libc.RECVMSG.invokeExact(cap, fd, msghdr, Libc.MSG_WAITALL);
                if (n == 0) {
                    throw new EOFException("connection closed by the peer with " + remaining + " of " + totalBytes + " bytes still to come");
                }
                if (n < 0) {
                    int errno = Libc.errno(cap);
                    if (errno == Libc.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("recvmsg", errno, "with " + remaining + " of " + totalBytes + " bytes to come"
                            + (shutdown.get() ? " (socket shut down)" : ""));
                }
                remaining -= n;
                first = advance(iov, first, count, n);
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /** Skips the iovecs moved whole by a partial send or receive of {@code n} bytes, trims the one moved in part. @return the first left */
    private static int advance(MemorySegment iov, int first, int count, long n) {
        while (n > 0 && first < count) {
            long off = first * Libc.IOVEC_SIZE;
            long len = iov.get(ValueLayout.JAVA_LONG, off + 8);
            if (n >= len) {
                n -= len;
                first++;
            } else {
                iov.set(ValueLayout.JAVA_LONG, off, iov.get(ValueLayout.JAVA_LONG, off) + n);
                iov.set(ValueLayout.JAVA_LONG, off + 8, len - n);
                n = 0;
            }
        }
        return first;
    }

    /** Sets iovec {@code i} to {@code length} bytes at {@code seg + offset}. */
    public static void iovec(MemorySegment iov, int i, MemorySegment seg, long offset, long length) {
        iov.set(ValueLayout.JAVA_LONG, i * Libc.IOVEC_SIZE, seg.address() + offset);
        iov.set(ValueLayout.JAVA_LONG, i * Libc.IOVEC_SIZE + 8, length);
    }

    /** @return the address iovec {@code i} of {@code iov} starts at */
    public static long iovecBase(MemorySegment iov, int i) {
        return iov.get(ValueLayout.JAVA_LONG, i * Libc.IOVEC_SIZE);
    }

    /** @return the length of iovec {@code i} of {@code iov} */
    public static long iovecLength(MemorySegment iov, int i) {
        return iov.get(ValueLayout.JAVA_LONG, i * Libc.IOVEC_SIZE + 8);
    }

    /** Size of the msghdr scratch segment for {@link #sendvFully}. */
    public static final long MSGHDR_BYTES = Libc.MSGHDR_SIZE;
    /** Size of one iovec. */
    public static final long IOVEC_BYTES = Libc.IOVEC_SIZE;

    /** Sets iovec {@code i} of {@code iov} to {@code seg}. */
    public static void iovec(MemorySegment iov, int i, MemorySegment seg) {
        iov.set(ValueLayout.JAVA_LONG, i * Libc.IOVEC_SIZE, seg.address());
        iov.set(ValueLayout.JAVA_LONG, i * Libc.IOVEC_SIZE + 8, seg.byteSize());
    }

    /**
     * Receives exactly {@code length} bytes into {@code dst} at {@code offset}.
     *
     * @return {@code length}, or -1 when the peer closed cleanly before the first byte
     * @throws EOFException when the peer closed part way (a truncated frame)
     * @throws IOException on errors; {@link ErrnoException#isTimeout()} when SO_RCVTIMEO expired
     */
    public long recvFully(MemorySegment dst, long offset, long length) throws IOException {
        Layer l = layer;
        if (l != null) {
            return l.recvFully(dst, offset, length);
        }
        return rawRecvFully(dst, offset, length);
    }

    /** {@link #recvFully} on the socket itself, under any record layer (for the layer's own bytes). */
    public long rawRecvFully(MemorySegment dst, long offset, long length) throws IOException {
        MemorySegment cap = Libc.capture();
        long done = 0;
        try {
            while (done < length) {
                long n = (long) Libc.RECV.invokeExact(cap, fd, dst.asSlice(offset + done, length - done), length - done, Libc.MSG_WAITALL);
                if (n == 0) {
                    if (done == 0) {
                        return -1;
                    }
                    throw new EOFException("connection closed by the peer after " + done + " of " + length + " bytes");
                }
                if (n < 0) {
                    int errno = Libc.errno(cap);
                    if (errno == Libc.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("recv", errno, "after " + done + " of " + length + " bytes"
                            + (shutdown.get() ? " (socket shut down)" : ""));
                }
                done += n;
            }
            return done;
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Receives what has arrived, at most {@code length} bytes (blocking until something arrives or
     * SO_RCVTIMEO expires; call after {@link #pollReadable} to wait with a deadline instead).
     *
     * @return bytes received, 0 when the peer closed
     * @throws IOException on errors; {@link ErrnoException#isTimeout()} when SO_RCVTIMEO expired
     */
    public long recvSome(MemorySegment dst, long offset, long length) throws IOException {
        Layer l = layer;
        if (l != null) {
            return l.recvSome(dst, offset, length);
        }
        return rawRecvSome(dst, offset, length);
    }

    /** {@link #recvSome} on the socket itself, under any record layer (for the layer's own bytes). */
    public long rawRecvSome(MemorySegment dst, long offset, long length) throws IOException {
        MemorySegment cap = Libc.capture();
        try {
            while (true) {
                long n = (long) Libc.RECV.invokeExact(cap, fd, dst.asSlice(offset, length), length, 0);
                if (n >= 0) {
                    return n;
                }
                int errno = Libc.errno(cap);
                if (errno != Libc.EINTR) {
                    throw new ErrnoException("recv", errno, shutdown.get() ? "(socket shut down)" : "on fd " + fd);
                }
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Waits until the socket is readable (data, EOF or error), or the timeout passes.
     *
     * @param timeoutMs negative waits for ever
     * @return true when readable
     */
    public boolean pollReadable(long timeoutMs) throws IOException {
        Layer l = layer;
        if (l != null) {
            return l.pollReadable(timeoutMs);
        }
        return rawPollReadable(timeoutMs);
    }

    /** {@link #pollReadable} on the socket itself, under any record layer (for the layer's own bytes). */
    public boolean rawPollReadable(long timeoutMs) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment pfd = arena.allocate(8, 4);
            pfd.set(ValueLayout.JAVA_INT, 0, fd);
            pfd.set(ValueLayout.JAVA_SHORT, 4, Libc.POLLIN);
            MemorySegment cap = Libc.capture();
            long deadline = timeoutMs < 0 ? Long.MAX_VALUE : System.nanoTime() + timeoutMs * 1_000_000;
            while (true) {
                int wait = timeoutMs < 0 ? -1 : (int) Math.max(0, Math.min(Integer.MAX_VALUE, (deadline - System.nanoTime()) / 1_000_000));
                int rc = (int) Libc.POLL.invokeExact(cap, pfd, 1L, wait);
                if (rc < 0) {
                    int errno = Libc.errno(cap);
                    if (errno == Libc.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("poll", errno, "on fd " + fd);
                }
                return rc > 0;
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("socket call", t);
        }
    }

    /**
     * Ends the record layer's sending in order (TLS: sends close_notify) before the socket is shut
     * down; nothing without a layer or once shut down.
     */
    public void closeLayerOutbound() throws IOException {
        Layer l = layer;
        if (l != null && !isShutdown()) {
            l.closeOutbound();
        }
    }

    /** Wakes every thread blocked on this socket; their calls fail. Idempotent, any thread. */
    public void shutdown() {
        if (closed.get() || !shutdown.compareAndSet(false, true)) {
            return;
        }
        try {
            int ignoredRc = (int) Libc.SHUTDOWN.invokeExact(Libc.capture(), fd, Libc.SHUT_RDWR);
            // ENOTCONN (never connected or already reset) is fine: the point is to wake threads.
        } catch (Throwable t) {
            throw new IllegalStateException("shutdown(" + fd + ") failed", t);
        }
    }

    /** @return true once {@link #shutdown()} or {@link #close()} was called */
    public boolean isShutdown() {
        return shutdown.get() || closed.get();
    }

    /** Shuts down and releases the descriptor. Idempotent. Call after the socket's threads stopped. */
    @Override
    public void close() {
        shutdown();
        if (closed.compareAndSet(false, true)) {
            try {
                int ignoredRc = (int) Libc.CLOSE.invokeExact(Libc.capture(), fd);
            } catch (Throwable t) {
                throw new IllegalStateException("close(" + fd + ") failed", t);
            }
        }
    }

    @Override
    public String toString() {
        return "NativeSocket[fd=" + fd + "]";
    }
}
