package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.zip.CRC32C;

/**
 * Test RAM: one or more regions in one shared arena, with a reproducible pattern in which some
 * pages are zero. Each non-zero page starts with an 8-byte stamp (page index and a version) so a
 * destination can tell which round's copy of a page it holds.
 */
public final class TckRam implements AutoCloseable {
    private final Arena arena = Arena.ofShared();
    private final RamLayout layout;

    private TckRam(String[] names, long[] sizes, long pageSize) {
        RamRegion[] regions = new RamRegion[names.length];
        for (int i = 0; i < names.length; i++) {
            regions[i] = RamRegion.of(names[i], arena.allocate(sizes[i], 4096), pageSize);
        }
        this.layout = RamLayout.of(regions);
    }

    /** One region "pc.ram" of {@code bytes} with 4 KiB pages. */
    public static TckRam of(long bytes) {
        return new TckRam(new String[]{"pc.ram"}, new long[]{bytes}, 4096);
    }

    /** Several regions with 4 KiB pages. */
    public static TckRam of(String[] names, long[] sizes) {
        return new TckRam(names, sizes, 4096);
    }

    public RamLayout layout() {
        return layout;
    }

    public MemorySegment memory(int region) {
        return layout.region(region).memory();
    }

    public long pages(int region) {
        return layout.region(region).pageCount();
    }

    /** Whether page {@code i} is zero in the pattern with this seed and zero fraction (0..100 %). */
    public static boolean isZero(long seed, long page, int zeroPercent) {
        long h = mix(seed ^ (page * 0x9E3779B97F4A7C15L));
        // Zero pages come in runs of 1..16 so zero runs are exercised, not only single pages.
        long run = mix(seed ^ ((page >>> 4) * 0xC2B2AE3D27D4EB4FL));
        return Long.remainderUnsigned(run, 100) < zeroPercent || Long.remainderUnsigned(h, 1000) == 0;
    }

    /** Fills region 0 with the pattern: zero pages per {@link #isZero}, others with data and stamp. */
    public void fillPattern(long seed, int zeroPercent, long version) {
        for (int r = 0; r < layout.regionCount(); r++) {
            MemorySegment m = memory(r);
            long pageSize = layout.region(r).pageSize();
            long pages = pages(r);
            for (long p = 0; p < pages; p++) {
                long base = p * pageSize;
                if (isZero(seed + r, p, zeroPercent)) {
                    m.asSlice(base, pageSize).fill((byte) 0);
                } else {
                    writePage(m, base, pageSize, seed + r, p, version);
                }
            }
        }
    }

    /** Writes page data: a stamp (page, version) then mixed longs. */
    public static void writePage(MemorySegment m, long base, long pageSize, long seed, long page, long version) {
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, base, (page << 16) | (version & 0xffff) | (1L << 62));
        long x = mix(seed ^ page ^ (version << 48));
        for (long off = 8; off < pageSize; off += 8) {
            x += 0x9E3779B97F4A7C15L;
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, base + off, x);
        }
    }

    /** @return the version stamped in a page, or -1 when the page is zero */
    public static long version(MemorySegment m, long base) {
        long stamp = m.get(ValueLayout.JAVA_LONG_UNALIGNED, base);
        return stamp == 0 ? -1 : stamp & 0xffff;
    }

    /** CRC32C of a whole region. */
    public long crc(int region) {
        MemorySegment m = memory(region);
        CRC32C crc = new CRC32C();
        for (long off = 0; off < m.byteSize(); off += 1L << 30) {
            crc.update(m.asSlice(off, Math.min(1L << 30, m.byteSize() - off)).asByteBuffer());
        }
        return crc.getValue();
    }

    /** Fills every region with one byte value. */
    public void fill(byte value) {
        for (int r = 0; r < layout.regionCount(); r++) {
            memory(r).fill(value);
        }
    }

    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    @Override
    public void close() {
        arena.close();
    }
}
