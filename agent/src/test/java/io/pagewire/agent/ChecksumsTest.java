package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** CRC32C arithmetic against {@link CRC32C} reading the bytes. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ChecksumsTest {

    private static long crc(byte[] b, int off, int len) {
        CRC32C c = new CRC32C();
        c.update(b, off, len);
        return c.getValue();
    }

    @Test
    void zerosEqualsReadingZeroBytes() {
        for (int n : new int[]{0, 1, 2, 3, 7, 8, 63, 64, 4095, 4096, 4097, 65536, 1 << 20, (1 << 22) + 12345}) {
            assertEquals(crc(new byte[n], 0, n), Checksums.zeros(n), "zeros(" + n + ")");
        }
    }

    @Test
    void combineEqualsTheCrcOfTheConcatenation() {
        Random rnd = new Random(42);
        byte[] b = new byte[1 << 20];
        rnd.nextBytes(b);
        for (int i = 0; i < 200; i++) {
            int len = rnd.nextInt(b.length + 1);
            int split = rnd.nextInt(len + 1);
            long whole = crc(b, 0, len);
            assertEquals(whole, Checksums.combine(crc(b, 0, split), crc(b, split, len - split), len - split), "len " + len + " split " + split);
        }
        assertEquals(crc(b, 0, 100), Checksums.combine(0, crc(b, 0, 100), 100), "the empty prefix (CRC 0) is neutral");
        assertEquals(crc(b, 0, 100), Checksums.combine(crc(b, 0, 100), 0, 0), "so is the empty suffix");
    }

    @Test
    void appendZerosEqualsReadingDataThenZeros() {
        Random rnd = new Random(7);
        byte[] b = new byte[3 << 20];
        byte[] head = new byte[1 << 20];
        rnd.nextBytes(head);
        System.arraycopy(head, 0, b, 0, head.length);
        for (int zeros : new int[]{0, 1, 4096, 1 << 20, 2 << 20}) {
            int data = 1 + rnd.nextInt(1 << 20);
            java.util.Arrays.fill(b, data, data + zeros, (byte) 0);
            assertEquals(crc(b, 0, data + zeros), Checksums.appendZeros(crc(b, 0, data), zeros), data + " bytes, then " + zeros + " zeros");
            assertEquals(Checksums.combine(crc(b, 0, data), Checksums.zeros(zeros), zeros), Checksums.appendZeros(crc(b, 0, data), zeros));
        }
    }

    @Test
    void hugeLengthsNeedNoMemoryAndAgreeWithSmallerSteps() {
        long tib = 1L << 40;
        // 1 TiB of zeros as 1 TiB at once or as 1024 GiB one after the other: the same CRC.
        long stepwise = 0;
        for (int i = 0; i < 1024; i++) {
            stepwise = Checksums.appendZeros(stepwise, 1L << 30);
        }
        assertEquals(stepwise, Checksums.zeros(tib));
        assertEquals(Checksums.zeros(Long.MAX_VALUE), Checksums.appendZeros(Checksums.zeros(Long.MAX_VALUE - 5), 5));
        assertThrows(IllegalArgumentException.class, () -> Checksums.zeros(-1));
    }
}

