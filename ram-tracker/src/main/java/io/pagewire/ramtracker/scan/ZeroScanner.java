package io.pagewire.ramtracker.scan;

import java.lang.foreign.MemorySegment;
import java.util.Optional;

/**
 * Tells whether a range of memory is all zeros. Three implementations, chosen by measurement
 * (see {@code docs/ram-tracker.md}: on an AVX-512 machine the Vector API OR-reduction reads zero
 * pages at ~30 GB/s, a plain {@code long} loop at ~21 GB/s, {@code MemorySegment.mismatch}
 * at ~15 GB/s):
 * <ul>
 * <li>{@link #vector()}: the Vector API (incubator module: present only when the JVM was started
 *     with {@code --add-modules jdk.incubator.vector});</li>
 * <li>{@link #scalar()}: 64-bit words OR-ed into four accumulators;</li>
 * <li>{@link #mismatch()}: {@code MemorySegment.mismatch} against a zero segment.</li>
 * </ul>
 * {@link #best()} is the vector one when available, else the scalar one; the system property
 * {@code pagewire.zeroScanner=vector|scalar|mismatch} forces a choice.
 *
 * <p>Every implementation reads the range front to back and stops at the first non-zero block,
 * so typical non-zero pages cost one cache line. Implementations are stateless and thread-safe.
 */
public interface ZeroScanner {

    /**
     * @param segment the memory
     * @param offset first byte
     * @param length bytes (any length; pages are multiples of 4 KiB)
     * @return true when every byte of {@code [offset, offset + length)} is zero
     */
    boolean isZero(MemorySegment segment, long offset, long length);

    /** @return "vector-512", "scalar" or "mismatch" */
    String name();

    /** @return the fastest implementation available in this JVM */
    static ZeroScanner best() {
        return ZeroScanners.BEST;
    }

    /** @return the plain-Java word loop */
    static ZeroScanner scalar() {
        return ScalarZeroScanner.INSTANCE;
    }

    /** @return the {@code MemorySegment.mismatch} implementation */
    static ZeroScanner mismatch() {
        return MismatchZeroScanner.INSTANCE;
    }

    /**
     * @return the Vector API implementation, or empty when {@code jdk.incubator.vector} is not in
     *         this JVM ({@link #vectorUnavailabilityCause()} says why)
     */
    static Optional<ZeroScanner> vector() {
        return Optional.ofNullable(ZeroScanners.VECTOR);
    }

    /** @return why the Vector API implementation is unavailable (naming the flag), or null */
    static String vectorUnavailabilityCause() {
        return ZeroScanners.VECTOR_CAUSE;
    }
}
