package io.pagewire.agent.cli;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** A reproducible RAM image with a given fraction of zero pages. */
final class Patterns {
    private Patterns() {
    }

    static void fill(MemorySegment m, long pageSize, double zeroFraction, long seed) {
        if (zeroFraction < 0 || zeroFraction > 1) {
            throw new IllegalArgumentException("--zero-fraction " + zeroFraction + " is outside 0..1");
        }
        long pages = m.byteSize() / pageSize;
        long threshold = (long) (zeroFraction * 1_000_000);
        for (long p = 0; p < pages; p++) {
            long base = p * pageSize;
            // Zero pages in runs of 16, so zero runs show up as they do in real guests.
            if (Long.remainderUnsigned(mix(seed ^ (p >>> 4)), 1_000_000) < threshold) {
                continue; // fresh memory is already zero
            }
            long x = mix(seed + p);
            for (long off = 0; off < pageSize; off += 8) {
                x += 0x9E3779B97F4A7C15L;
                m.set(ValueLayout.JAVA_LONG_UNALIGNED, base + off, x | 1);
            }
        }
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
