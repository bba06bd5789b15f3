package io.pagewire.ramtracker.scan;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class ZeroScannerTest {
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    static List<String> scanners() {
        return List.of("scalar", "mismatch", "vector");
    }

    static ZeroScanner scanner(String name) {
        return switch (name) {
            case "scalar" -> ZeroScanner.scalar();
            case "mismatch" -> ZeroScanner.mismatch();
            default -> {
                assumeTrue(ZeroScanner.vector().isPresent(), () -> "Vector API scanner unavailable: " + ZeroScanner.vectorUnavailabilityCause());
                yield ZeroScanner.vector().orElseThrow();
            }
        };
    }

    static boolean reference(MemorySegment s, long off, long len) {
        for (long i = off; i < off + len; i++) {
            if (s.get(JAVA_BYTE, i) != 0) {
                return false;
            }
        }
        return true;
    }

    @ParameterizedTest
    @MethodSource("scanners")
    void aSingleNonZeroByteAnywhereIsFound(String name) {
        ZeroScanner z = scanner(name);
        MemorySegment page = arena.allocate(2 * 4096 + 64, 4096);
        assertTrue(z.isZero(page, 0, 4096));
        // Every byte position of a page, at an aligned and a misaligned start.
        for (long start : new long[] {0, 4096 + 3}) {
            for (int i = 0; i < 4096; i++) {
                page.set(JAVA_BYTE, start + i, (byte) (1 << (i & 7)));
                assertFalse(z.isZero(page, start, 4096), name + ": byte " + i + " from " + start);
                page.set(JAVA_BYTE, start + i, (byte) 0);
            }
            assertTrue(z.isZero(page, start, 4096));
        }
    }

    @ParameterizedTest
    @MethodSource("scanners")
    void randomLengthsOffsetsAndPatternsMatchAByteLoop(String name) {
        ZeroScanner z = scanner(name);
        Random rnd = new Random(0x5eed_2e20L);
        MemorySegment buf = arena.allocate(3 << 20, 4096);
        for (int iter = 0; iter < 2000; iter++) {
            long len = rnd.nextInt(4) == 0 ? (2 << 20) : rnd.nextInt(9000);
            long off = rnd.nextInt((int) (buf.byteSize() - len));
            buf.asSlice(off, len).fill((byte) 0);
            List<Long> set = new ArrayList<>();
            int nonZero = rnd.nextInt(3);
            for (int k = 0; k < nonZero && len > 0; k++) {
                long at = off + (rnd.nextBoolean() ? len - 1 - rnd.nextInt((int) Math.min(len, 200)) : rnd.nextLong(len));
                buf.set(JAVA_BYTE, at, (byte) (1 + rnd.nextInt(255)));
                set.add(at);
            }
            assertEquals(reference(buf, off, len), z.isZero(buf, off, len), name + " iteration " + iter + ": [" + off + ", +" + len + ") with " + set);
        }
    }

    @Test
    void bestIsTheVectorScannerWhenTheModuleIsPresent() {
        if (ZeroScanner.vector().isPresent()) {
            assertEquals(ZeroScanner.vector().orElseThrow(), ZeroScanner.best());
            assertTrue(ZeroScanner.best().name().startsWith("vector-"));
        } else {
            assertEquals("scalar", ZeroScanner.best().name());
            assertTrue(ZeroScanner.vectorUnavailabilityCause().contains("--add-modules jdk.incubator.vector"));
        }
    }
}
