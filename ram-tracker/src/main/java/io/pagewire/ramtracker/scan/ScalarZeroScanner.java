package io.pagewire.ramtracker.scan;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * 64-bit words OR-ed into four independent accumulators (the JIT does not vectorise this
 * reduction over a memory segment; four chains run at ~21 GB/s here against ~16.5 GB/s for one),
 * one test per 4 KiB chunk.
 */
final class ScalarZeroScanner implements ZeroScanner {
    static final ScalarZeroScanner INSTANCE = new ScalarZeroScanner();

    private static final ValueLayout.OfLong WORD = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final int CHUNK = 4096;

    private ScalarZeroScanner() {
    }

    @Override
    public boolean isZero(MemorySegment segment, long offset, long length) {
        long end = offset + length;
        long i = offset;
        // First word alone: most non-zero pages have data in their first bytes.
        if (length >= 8 && segment.get(WORD, i) != 0) {
            return false;
        }
        for (; i + CHUNK <= end; i += CHUNK) {
            long a0 = 0;
            long a1 = 0;
            long a2 = 0;
            long a3 = 0;
            for (int k = 0; k < CHUNK; k += 32) {
                a0 |= segment.get(WORD, i + k);
                a1 |= segment.get(WORD, i + k + 8);
                a2 |= segment.get(WORD, i + k + 16);
                a3 |= segment.get(WORD, i + k + 24);
            }
            if ((a0 | a1 | a2 | a3) != 0) {
                return false;
            }
        }
        return tail(segment, i, end);
    }

    static boolean tail(MemorySegment segment, long i, long end) {
        long acc = 0;
        for (; i + 8 <= end; i += 8) {
            acc |= segment.get(WORD, i);
        }
        for (; i < end; i++) {
            acc |= segment.get(ValueLayout.JAVA_BYTE, i);
        }
        return acc == 0;
    }

    @Override
    public String name() {
        return "scalar";
    }

    @Override
    public String toString() {
        return name();
    }
}
