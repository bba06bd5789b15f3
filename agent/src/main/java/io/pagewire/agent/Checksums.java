package io.pagewire.agent;

import java.lang.foreign.MemorySegment;
import java.util.zip.CRC32C;

/**
 * CRC32C arithmetic for end-to-end verification: the CRC of a run of zero bytes and the CRC of a
 * concatenation, both computed without touching memory, so that a region's checksum can be put
 * together from chunks checksummed in parallel and from runs the kernel knows were never
 * populated.
 *
 * <p>How: a CRC register is a polynomial over GF(2) modulo P (CRC32C's, 0x1EDC6F41, here in the
 * reflected bit order {@code java.util.zip.CRC32C} uses: bit 31 is x^0). Feeding n zero bytes
 * multiplies the register by x^(8n) mod P; the pre- and post-inversion of CRC32C cancel out of a
 * concatenation, so {@code crc(A || B) = crc(A) * x^(8 |B|) + crc(B)} (zlib's
 * {@code crc32_combine}). x^(8n) mod P is a product of the precomputed powers x^(2^k) mod P over
 * the bits of 8n: at most 64 multiplications of 32 steps each, whatever n is.
 */
public final class Checksums {
    /** CRC32C's polynomial, bit-reflected. */
    private static final int POLY = 0x82F63B78;
    /** The polynomial 1 (x^0) in reflected order. */
    private static final int ONE = 1 << 31;
    /** X2N[k] = x^(2^k) mod P; 8 * Long.MAX_VALUE has 66 bits, so 66 entries cover any length. */
    private static final int[] X2N = new int[66];

    static {
        int p = ONE >>> 1; // x^1
        X2N[0] = p;
        for (int k = 1; k < X2N.length; k++) {
            p = multiplyModP(p, p);
            X2N[k] = p;
        }
    }

    private Checksums() {
    }

    /** @return a * b mod P (reflected order) */
    private static int multiplyModP(int a, int b) {
        int product = 0;
        for (int m = ONE; m != 0 && a != 0; m >>>= 1) {
            if ((a & m) != 0) {
                product ^= b;
                a ^= m;
            }
            b = (b & 1) != 0 ? (b >>> 1) ^ POLY : b >>> 1;
        }
        return product;
    }

    /** @return x^(8 * bytes) mod P: what feeding {@code bytes} zero bytes multiplies a register by */
    private static int shiftBytes(long bytes) {
        int p = ONE;
        // 8 * bytes = bytes << 3: start at the power for bit 3.
        for (int k = 3; bytes != 0; bytes >>>= 1, k++) {
            if ((bytes & 1) != 0) {
                p = multiplyModP(X2N[k], p);
            }
        }
        return p;
    }

    private static void checkLength(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("length " + bytes + " is negative");
        }
    }

    /**
     * @param crc1 CRC32C of A
     * @param crc2 CRC32C of B
     * @param length2 bytes of B
     * @return CRC32C of A followed by B
     */
    public static long combine(long crc1, long crc2, long length2) {
        checkLength(length2);
        return (multiplyModP(shiftBytes(length2), (int) crc1) ^ (int) crc2) & 0xFFFF_FFFFL;
    }

    /**
     * @param crc CRC32C of A
     * @param zeroBytes how many zero bytes follow A
     * @return CRC32C of A followed by {@code zeroBytes} zero bytes
     */
    public static long appendZeros(long crc, long zeroBytes) {
        checkLength(zeroBytes);
        // The register holds ~crc; zeros only multiply it by x^(8n).
        return ~multiplyModP(shiftBytes(zeroBytes), ~(int) crc) & 0xFFFF_FFFFL;
    }

    /** @return CRC32C of {@code bytes} zero bytes */
    public static long zeros(long bytes) {
        return appendZeros(0, bytes);
    }

    /** @return the CRC32C of a segment's bytes, read */
    public static long crc32c(MemorySegment m) {
        CRC32C crc = new CRC32C();
        update(crc, m);
        return crc.getValue();
    }

    /** Adds a segment's bytes (of any size) to a running CRC32C. */
    static void update(CRC32C crc, MemorySegment m) {
        for (long off = 0; off < m.byteSize(); off += 1L << 30) {
            crc.update(m.asSlice(off, Math.min(1L << 30, m.byteSize() - off)).asByteBuffer());
        }
    }
}
