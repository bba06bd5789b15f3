package io.pagewire.agent.guest;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.scan.BalloonMap;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;

/**
 * A synthetic guest's RAM as it is before the migration starts: one memfd region {@code pc.ram}
 * where a fraction of the pages was never written (zero, not even populated), a fraction was
 * given back through the balloon (in 2 MiB chunks, discarded, marked in the {@link BalloonMap}),
 * and the rest holds data.
 */
public final class GuestImage implements AutoCloseable {
    private static final long BALLOON_CHUNK_PAGES = 512;

    private final GuestRam ram;
    private final GuestRegion region;
    private final BalloonMap balloon;

    private GuestImage(GuestRam ram, GuestRegion region, BalloonMap balloon) {
        this.ram = ram;
        this.region = region;
        this.balloon = balloon;
    }

    /**
     * @param bytes RAM size (a multiple of the page size)
     * @param zeroFraction share of pages never written, 0..1
     * @param balloonFraction share of pages ballooned, 0..1
     * @param seed pattern seed
     */
    public static GuestImage create(long bytes, double zeroFraction, double balloonFraction, long seed) {
        return create(bytes, zeroFraction, balloonFraction, seed, false);
    }

    /**
     * As {@link #create(long, double, double, long)}; with {@code writeZeroPages} the zero pages are
     * written with zeroes (populated, so they must be scanned) instead of left untouched.
     */
    public static GuestImage create(long bytes, double zeroFraction, double balloonFraction, long seed, boolean writeZeroPages) {
        return create(RegionSpec.memfd("pc.ram", bytes), zeroFraction, balloonFraction, seed, writeZeroPages);
    }

    /**
     * As {@link #create(long, double, double, long, boolean)}, with the region given (memfd, anonymous, file).
     */
    public static GuestImage create(RegionSpec spec, double zeroFraction, double balloonFraction, long seed, boolean writeZeroPages) {
        if (zeroFraction < 0 || zeroFraction > 1 || balloonFraction < 0 || balloonFraction > 1) {
            throw new IllegalArgumentException("zero fraction " + zeroFraction + " and balloon fraction " + balloonFraction + " must be in 0..1");
        }
        GuestRam ram = GuestRam.create();
        try {
            GuestRegion region = ram.open(spec);
            BalloonMap balloon = new BalloonMap(region.pageCount(), ram.arena());
            long pages = region.pageCount();
            long pageSize = region.pageSize();
            MemorySegment m = region.memory();
            long zeroThreshold = (long) (zeroFraction * 1_000_000);
            long balloonThreshold = (long) (balloonFraction * 1_000_000);
            for (long chunk = 0; chunk < pages; chunk += BALLOON_CHUNK_PAGES) {
                long n = Math.min(BALLOON_CHUNK_PAGES, pages - chunk);
                if (Long.remainderUnsigned(mix(seed ^ 0xba11 ^ chunk), 1_000_000) < balloonThreshold) {
                    balloon.mark(chunk, n);
                    continue; // never written: the guest gave these pages back
                }
                for (long p = chunk; p < chunk + n; p++) {
                    // Zero pages come in runs of 16, as in real guests.
                    if (Long.remainderUnsigned(mix(seed ^ (p >>> 4)), 1_000_000) < zeroThreshold) {
                        if (writeZeroPages) {
                            m.asSlice(p * pageSize, pageSize).fill((byte) 0);
                        }
                        continue;
                    }
                    long x = mix(seed + p);
                    long base = p * pageSize;
                    for (long off = 0; off < pageSize; off += 8) {
                        x += 0x9E3779B97F4A7C15L;
                        m.set(ValueLayout.JAVA_LONG_UNALIGNED, base + off, x | 1);
                    }
                }
            }
            return new GuestImage(ram, region, balloon);
        } catch (RuntimeException e) {
            ram.close();
            throw e;
        }
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    public GuestRam ram() {
        return ram;
    }

    public GuestRegion region() {
        return region;
    }

    public BalloonMap balloon() {
        return balloon;
    }

    /** @return the balloon maps by region name, as {@link io.pagewire.agent.SourceMigration} takes them */
    public Map<String, BalloonMap> balloons() {
        return Map.of(region.name(), balloon);
    }

    @Override
    public void close() {
        ram.close();
    }
}
