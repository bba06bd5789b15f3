package io.pagewire.agent.replica;

import io.pagewire.agent.Checksums;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * CRC32C of guest RAM as the concatenation of its regions, never-populated runs computed (not read), so that a
 * checksum of sparse RAM neither reads nor populates its holes.
 */
public final class RamCrc {
    private RamCrc() {
    }

    /**
     * @param regions the regions (their population is asked of the kernel)
     * @param views what to read for each region: its memory, or a second mapping of the same file
     * @return the CRC32C of all regions' bytes, in order
     */
    public static long of(List<GuestRegion> regions, List<MemorySegment> views) {
        return of(regions, views, null, null);
    }

    /**
     * @param regions the regions (their population is asked of the kernel)
     * @param views what to read for each region
     * @param substituted per region, pages read from {@code substitutes} instead of the view (null: none)
     * @param substitutes per region, where substituted pages are read (same offsets)
     * @return the CRC32C of all regions' bytes, in order
     */
    public static long of(List<GuestRegion> regions, List<MemorySegment> views, List<DirtyBitmap> substituted, List<MemorySegment> substitutes) {
        long crc = 0;
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            MemorySegment v = views.get(i);
            long pages = r.pageCount();
            long regionCrc = 0;
            long p = 0;
            while (p < pages) {
                long data = r.nextPopulatedPage(p, pages);
                regionCrc = Checksums.appendZeros(regionCrc, (data - p) * r.pageSize());
                if (data >= pages) {
                    break;
                }
                long hole = r.nextUnpopulatedPage(data, pages);
                long q = data;
                while (q < hole) {
                    // Split the run where substitution starts or stops.
                    boolean sub = substituted != null && substituted.get(i).isDirty(q);
                    long end = substituted == null ? hole : sub ? substituted.get(i).nextClean(q, hole) : substituted.get(i).nextDirty(q, hole);
                    MemorySegment from = sub ? substitutes.get(i) : v;
                    regionCrc = Checksums.combine(regionCrc, Checksums.crc32c(from.asSlice(q * r.pageSize(), (end - q) * r.pageSize())),
                            (end - q) * r.pageSize());
                    q = end;
                }
                p = hole;
            }
            crc = i == 0 ? regionCrc : Checksums.combine(crc, regionCrc, r.sizeBytes());
        }
        return crc;
    }
}
