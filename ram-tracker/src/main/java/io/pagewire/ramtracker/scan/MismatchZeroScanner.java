package io.pagewire.ramtracker.scan;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** {@code MemorySegment.mismatch} against a 64 KiB zero segment, a chunk at a time. */
final class MismatchZeroScanner implements ZeroScanner {
    static final MismatchZeroScanner INSTANCE = new MismatchZeroScanner();

    private static final long ZEROS_BYTES = 64 * 1024;
    private static final MemorySegment ZEROS = Arena.global().allocate(ZEROS_BYTES, 4096);

    private MismatchZeroScanner() {
    }

    @Override
    public boolean isZero(MemorySegment segment, long offset, long length) {
        long end = offset + length;
        for (long i = offset; i < end; i += ZEROS_BYTES) {
            long n = Math.min(ZEROS_BYTES, end - i);
            if (MemorySegment.mismatch(segment, i, i + n, ZEROS, 0, n) >= 0) {
                return false;
            }
        }
        return true;
    }

    @Override
    public String name() {
        return "mismatch";
    }

    @Override
    public String toString() {
        return name();
    }
}
