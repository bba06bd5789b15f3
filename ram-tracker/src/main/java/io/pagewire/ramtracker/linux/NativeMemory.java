package io.pagewire.ramtracker.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reads, writes and compares memory from native code ({@code memcpy}, {@code memcmp}), for
 * memory that a userfaultfd may hold: guest RAM during postcopy (MISSING or MINOR faults) or a
 * write-protected snapshot (synchronous WP faults).
 *
 * <p>Why: a thread that blocks in a page fault inside compiled Java code still counts as running
 * Java, so every JVM safepoint (GC, deoptimisation, biased code patching) waits for it; if the
 * thread that would resolve the fault needs a safepoint too, the JVM hangs and stops answering
 * even {@code jcmd}. A thread blocked inside a downcall is "in native" and holds no safepoint up.
 * These calls are deliberately not {@code Linker.Option.critical}: a critical call stays in Java
 * state. Real vCPUs run in KVM, not in the JVM; tests and the synthetic guest use this class.
 *
 * <p>Every method checks its bounds against the segment first, then touches memory only in C.
 * Threading: any thread; each thread uses its own scratch buffer.
 */
public final class NativeMemory {
    private static final int COMPARE_CHUNK = 64 << 10;

    /** Per-thread scratch for single values and for locating a difference; never userfaultfd memory. */
    private static final ThreadLocal<MemorySegment> SCRATCH =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(2L * COMPARE_CHUNK, 4096));

    private NativeMemory() {
    }

    /**
     * Copies bytes with {@code memcpy}; either side may be userfaultfd-registered memory.
     *
     * @param src source segment
     * @param srcOffset offset in {@code src}
     * @param dst destination segment
     * @param dstOffset offset in {@code dst}
     * @param bytes how many bytes
     * @throws IndexOutOfBoundsException when either range is outside its segment
     */
    public static void copy(MemorySegment src, long srcOffset, MemorySegment dst, long dstOffset, long bytes) {
        long from = src.asSlice(srcOffset, bytes).address();
        long to = dst.asSlice(dstOffset, bytes).address();
        if (bytes == 0) {
            return;
        }
        Linux.ensureAvailable();
        try {
            long ignored = (long) Libc.MEMCPY.invokeExact(to, from, bytes);
        } catch (Throwable t) {
            throw Linux.unexpected("memcpy", t);
        }
    }

    /**
     * @param segment memory to read
     * @param offset byte offset
     * @return the native-order long at {@code offset}, read in C
     */
    public static long getLong(MemorySegment segment, long offset) {
        MemorySegment s = SCRATCH.get();
        copy(segment, offset, s, 0, Long.BYTES);
        return s.get(ValueLayout.JAVA_LONG, 0);
    }

    /**
     * @param segment memory to write
     * @param offset byte offset
     * @param value the native-order long written at {@code offset}, in C
     */
    public static void setLong(MemorySegment segment, long offset, long value) {
        MemorySegment s = SCRATCH.get();
        s.set(ValueLayout.JAVA_LONG, 0, value);
        copy(s, 0, segment, offset, Long.BYTES);
    }

    /**
     * @param segment memory to read
     * @param offset byte offset
     * @return the byte at {@code offset}, read in C
     */
    public static byte getByte(MemorySegment segment, long offset) {
        MemorySegment s = SCRATCH.get();
        copy(segment, offset, s, 0, 1);
        return s.get(ValueLayout.JAVA_BYTE, 0);
    }

    /**
     * @param segment memory to write
     * @param offset byte offset
     * @param value the byte written at {@code offset}, in C
     */
    public static void setByte(MemorySegment segment, long offset, byte value) {
        MemorySegment s = SCRATCH.get();
        s.set(ValueLayout.JAVA_BYTE, 0, value);
        copy(s, 0, segment, offset, 1);
    }

    /**
     * Compares two segments in C, as {@link MemorySegment#mismatch(MemorySegment)} does.
     *
     * @param a one segment
     * @param b the other
     * @return the offset of the first byte that differs, the smaller size when one is a prefix
     *         of the other, or -1 when both are equal
     */
    public static long mismatch(MemorySegment a, MemorySegment b) {
        long common = Math.min(a.byteSize(), b.byteSize());
        Linux.ensureAvailable();
        for (long off = 0; off < common; off += COMPARE_CHUNK) {
            long n = Math.min(COMPARE_CHUNK, common - off);
            int rc;
            try {
                rc = (int) Libc.MEMCMP.invokeExact(a.address() + off, b.address() + off, n);
            } catch (Throwable t) {
                throw Linux.unexpected("memcmp", t);
            }
            if (rc != 0) {
                // Copy both chunks out (in C) and find the byte in Java, on memory no userfaultfd holds.
                MemorySegment s = SCRATCH.get();
                copy(a, off, s, 0, n);
                copy(b, off, s, COMPARE_CHUNK, n);
                return off + s.asSlice(0, n).mismatch(s.asSlice(COMPARE_CHUNK, n));
            }
        }
        return a.byteSize() == b.byteSize() ? -1 : common;
    }
}
