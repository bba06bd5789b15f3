package io.pagewire.agent;

import java.lang.foreign.MemorySegment;
import java.util.zip.CRC32C;

/** CRC32C over guest RAM, for end-to-end verification. */
public final class Checksums {
    private Checksums() {
    }

    /** @return the CRC32C of a whole segment */
    public static long crc32c(MemorySegment m) {
        CRC32C crc = new CRC32C();
        for (long off = 0; off < m.byteSize(); off += 1L << 30) {
            crc.update(m.asSlice(off, Math.min(1L << 30, m.byteSize() - off)).asByteBuffer());
        }
        return crc.getValue();
    }
}
