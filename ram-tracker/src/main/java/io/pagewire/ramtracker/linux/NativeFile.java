package io.pagewire.ramtracker.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A file descriptor for guest RAM backing: a memfd, a file on tmpfs ({@code /dev/shm}) or on
 * hugetlbfs. Intent-level operations: size it, allocate or punch out ranges, find data and holes.
 *
 * <p>Threading: every method may be called from any thread; {@link #close()} only after the
 * threads using the descriptor stopped (a recycled descriptor number must never be used by mistake).
 */
public final class NativeFile implements AutoCloseable {
    private final int fd;
    private final String description;
    private final AtomicBoolean closed = new AtomicBoolean();

    private NativeFile(int fd, String description) {
        this.fd = fd;
        this.description = description;
    }

    /**
     * Creates an anonymous memory file ({@code memfd_create}), close-on-exec.
     *
     * @param name name shown in /proc/PID/fd (informational)
     * @param hugetlb2MiB back it with 2 MiB hugetlb pages ({@code MFD_HUGETLB | MFD_HUGE_2MB});
     *                    they must be reserved ({@code vm.nr_hugepages}) before it is mapped
     * @return the file, size 0
     */
    public static NativeFile memfd(String name, boolean hugetlb2MiB) {
        Linux.ensureAvailable();
        int flags = Libc.MFD_CLOEXEC | (hugetlb2MiB ? Libc.MFD_HUGETLB | Libc.MFD_HUGE_2MB : 0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cap = Libc.capture();
            int fd = (int) Libc.MEMFD_CREATE.invokeExact(cap, arena.allocateFrom(name), flags);
            if (fd < 0) {
                int errno = Libc.errno(cap);
                throw Linux.failure("memfd_create", "'" + name + "'" + (hugetlb2MiB ? " with MFD_HUGETLB|MFD_HUGE_2MB" : ""), errno,
                        errno == Libc.EINVAL && hugetlb2MiB ? "this kernel has no 2 MiB hugetlb support" : null);
            }
            return new NativeFile(fd, "memfd '" + name + "'");
        } catch (Throwable t) {
            throw Linux.unexpected("memfd_create", t);
        }
    }

    /**
     * Takes ownership of a descriptor opened elsewhere (one received from another process): closing
     * this file closes it.
     *
     * @param fd the descriptor
     * @param description for messages, e.g. "memfd of region 'pc.ram' from the source"
     */
    public static NativeFile adopt(int fd, String description) {
        if (fd < 0) {
            throw new IllegalArgumentException("file descriptor " + fd + " is negative (" + description + ")");
        }
        return new NativeFile(fd, description);
    }

    /**
     * Opens (creating if needed, mode 0600) a file for reading and writing, close-on-exec.
     *
     * @param path the file, typically on tmpfs ({@code /dev/shm}) or hugetlbfs
     * @return the file
     */
    public static NativeFile open(Path path) {
        Linux.ensureAvailable();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cap = Libc.capture();
            int fd = (int) Libc.OPEN.invokeExact(cap, arena.allocateFrom(path.toString()), Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC, 0600);
            if (fd < 0) {
                throw Linux.failure("open", path.toString(), Libc.errno(cap), "check that the directory exists and is writable");
            }
            return new NativeFile(fd, "file " + path);
        } catch (Throwable t) {
            throw Linux.unexpected("open", t);
        }
    }

    /** @return the descriptor number */
    public int fd() {
        return fd;
    }

    /** @return "memfd 'x'" or "file /dev/shm/x", for messages */
    public String description() {
        return description;
    }

    /**
     * Sets the file size ({@code ftruncate}).
     *
     * @param bytes new size
     */
    public void truncate(long bytes) {
        try {
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.FTRUNCATE.invokeExact(cap, fd, bytes);
            if (rc < 0) {
                throw Linux.failure("ftruncate", description + " to " + bytes + " bytes", Libc.errno(cap), null);
            }
        } catch (Throwable t) {
            throw Linux.unexpected("ftruncate", t);
        }
    }

    /** @return the file size ({@code lseek(SEEK_END)}) */
    public long size() {
        return seek(0, Libc.SEEK_END, "lseek(SEEK_END)");
    }

    /**
     * Allocates backing store for a range ({@code fallocate} mode 0), as the destination does to
     * populate RAM in bulk.
     *
     * @param offset byte offset
     * @param length bytes
     */
    public void allocate(long offset, long length) {
        fallocate(0, offset, length, "fallocate");
    }

    /**
     * Frees a range: it becomes a hole that reads as zeros ({@code fallocate(PUNCH_HOLE|KEEP_SIZE)}).
     * Every mapping of the range sees the hole.
     *
     * @param offset byte offset
     * @param length bytes
     */
    public void punchHole(long offset, long length) {
        fallocate(Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, length, "fallocate(PUNCH_HOLE)");
    }

    private void fallocate(int mode, long offset, long length, String call) {
        try {
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.FALLOCATE.invokeExact(cap, fd, mode, offset, length);
            if (rc < 0) {
                int errno = Libc.errno(cap);
                throw Linux.failure(call, description + " bytes [" + offset + ", +" + length + ")", errno,
                        errno == Libc.EOPNOTSUPP ? "the file system does not support it" : null);
            }
        } catch (Throwable t) {
            throw Linux.unexpected(call, t);
        }
    }

    /**
     * @param offset where to start looking
     * @return the first offset at or after {@code offset} that holds data
     *         ({@code lseek(SEEK_DATA)}), or -1 when there is none before the end of the file
     */
    public long nextData(long offset) {
        return seekOrMinusOne(offset, Libc.SEEK_DATA, "lseek(SEEK_DATA)");
    }

    /**
     * @param offset where to start looking
     * @return the first offset at or after {@code offset} in a hole ({@code lseek(SEEK_HOLE)}); the
     *         end of the file counts as a hole. -1 when {@code offset} is at or past the end.
     */
    public long nextHole(long offset) {
        return seekOrMinusOne(offset, Libc.SEEK_HOLE, "lseek(SEEK_HOLE)");
    }

    private long seekOrMinusOne(long offset, int whence, String call) {
        try {
            MemorySegment cap = Libc.capture();
            long r = (long) Libc.LSEEK.invokeExact(cap, fd, offset, whence);
            if (r < 0) {
                int errno = Libc.errno(cap);
                if (errno == Libc.ENXIO) {
                    return -1; // no more data (SEEK_DATA) or offset beyond the end
                }
                throw Linux.failure(call, description + " at offset " + offset, errno,
                        errno == Libc.EINVAL ? "the file system does not support SEEK_DATA/SEEK_HOLE" : null);
            }
            return r;
        } catch (Throwable t) {
            throw Linux.unexpected(call, t);
        }
    }

    private long seek(long offset, int whence, String call) {
        try {
            MemorySegment cap = Libc.capture();
            long r = (long) Libc.LSEEK.invokeExact(cap, fd, offset, whence);
            if (r < 0) {
                throw Linux.failure(call, description, Libc.errno(cap), null);
            }
            return r;
        } catch (Throwable t) {
            throw Linux.unexpected(call, t);
        }
    }

    /** What {@code fstatfs} says about the file system holding a file. */
    public record FileSystem(long type, long blockSize) {
        /** @return true on hugetlbfs (its block size is the huge page size) */
        public boolean isHugetlbfs() {
            return type == Libc.HUGETLBFS_MAGIC;
        }

        /** @return true on tmpfs/shmem (memfds live there too) */
        public boolean isTmpfs() {
            return type == Libc.TMPFS_MAGIC;
        }
    }

    /** @return the file system type and block size ({@code fstatfs}) */
    public FileSystem fileSystem() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Libc.STATFS_SIZE, 8);
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.FSTATFS.invokeExact(cap, fd, buf);
            if (rc < 0) {
                throw Linux.failure("fstatfs", description, Libc.errno(cap), null);
            }
            return new FileSystem(buf.get(JAVA_LONG, Libc.STATFS_TYPE) & 0xFFFF_FFFFL, buf.get(JAVA_LONG, Libc.STATFS_BSIZE));
        } catch (Throwable t) {
            throw Linux.unexpected("fstatfs", t);
        }
    }

    /** Closes the descriptor (mappings made from it stay valid). Idempotent. */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            MemorySegment cap = Libc.capture();
            int rc = (int) Libc.CLOSE.invokeExact(cap, fd);
            if (rc < 0) {
                throw Linux.failure("close", description, Libc.errno(cap), null);
            }
        } catch (Throwable t) {
            throw Linux.unexpected("close", t);
        }
    }

    @Override
    public String toString() {
        return description + " (fd " + fd + ")";
    }
}
