package io.pagewire.linux;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * File descriptors handed between processes (memory backings passed with SCM_RIGHTS): checking what
 * arrived, closing it, and, for tests and tools, making and mapping a memfd.
 */
public final class FileDescriptors {
    private FileDescriptors() {
    }

    /**
     * Checks that {@code fd} is a regular file (memfd, tmpfs, hugetlbfs or disk file) and returns its size.
     *
     * @param what names the descriptor in the error
     * @throws IOException when fstat fails or it is no regular file (a socket, pipe or device)
     */
    public static long regularFileSize(int fd, String what) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment stx = arena.allocate(Libc.STATX_SIZE_BYTES, 8);
            MemorySegment empty = arena.allocateFrom("", StandardCharsets.UTF_8);
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.STATX.invokeExact(cap, fd, empty, Libc.AT_EMPTY_PATH, Libc.STATX_TYPE | Libc.STATX_SIZE, stx);
            if (rc < 0) {
                throw new ErrnoException("statx", Libc.errno(cap), "of " + what + " (fd " + fd + ")");
            }
            int mode = Short.toUnsignedInt(stx.get(ValueLayout.JAVA_SHORT, Libc.STATX_MODE));
            if ((mode & Libc.S_IFMT) != Libc.S_IFREG) {
                throw new IOException(what + " (fd " + fd + ") is not a regular file or memfd (file type 0"
                        + Integer.toOctalString(mode & Libc.S_IFMT) + ")");
            }
            return stx.get(ValueLayout.JAVA_LONG, Libc.STATX_SIZE_AT);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("statx", t);
        }
    }

    /** Closes a descriptor; EBADF (already closed) is ignored, so closing twice is harmless. */
    public static void close(int fd) {
        try {
            int ignoredRc = (int) Libc.CLOSE.invokeExact(Libc.capture(), fd);
        } catch (Throwable t) {
            throw Libc.unexpected("close", t);
        }
    }

    /**
     * Creates a memfd of {@code size} bytes (sparse: nothing is allocated until written).
     *
     * @return the descriptor, owned by the caller
     */
    public static int memfd(String name, long size) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cname = arena.allocateFrom(name, StandardCharsets.UTF_8);
            MemorySegment cap = Libc.capture();
            int fd = (int) Libc.MEMFD_CREATE.invokeExact(cap, cname, Libc.MFD_CLOEXEC);
            if (fd < 0) {
                throw new ErrnoException("memfd_create", Libc.errno(cap), "'" + name + "'");
            }
            int rc = (int) Libc.FTRUNCATE.invokeExact(cap, fd, size);
            if (rc < 0) {
                int errno = Libc.errno(cap);
                close(fd);
                throw new ErrnoException("ftruncate", errno, "of memfd '" + name + "' to " + size + " bytes");
            }
            return fd;
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("memfd_create", t);
        }
    }

    /**
     * Maps {@code size} bytes of {@code fd} from {@code offset}, shared and read-write; unmapped when
     * {@code arena} closes.
     */
    public static MemorySegment mapShared(int fd, long offset, long size, Arena arena) throws IOException {
        MemorySegment cap = Libc.capture();
        try {
            long addr = (long) Libc.MMAP.invokeExact(cap, 0L, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, offset);
            if (addr == -1L) {
                throw new ErrnoException("mmap", Libc.errno(cap), size + " bytes of fd " + fd + " at offset " + offset);
            }
            return MemorySegment.ofAddress(addr).reinterpret(size, arena, s -> unmap(s.address(), size));
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.unexpected("mmap", t);
        }
    }

    private static void unmap(long address, long size) {
        try {
            int ignoredRc = (int) Libc.MUNMAP.invokeExact(Libc.capture(), address, size);
        } catch (Throwable t) {
            throw Libc.unexpected("munmap", t);
        }
    }
}
