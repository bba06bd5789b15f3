package io.pagewire.agent.replica;

import io.pagewire.agent.Checksums;
import io.pagewire.ramtracker.GuestRegion;

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
                regionCrc = Checksums.combine(regionCrc, Checksums.crc32c(v.asSlice(data * r.pageSize(), (hole - data) * r.pageSize())),
                        (hole - data) * r.pageSize());
                p = hole;
            }
            crc = i == 0 ? regionCrc : Checksums.combine(crc, regionCrc, r.sizeBytes());
        }
        return crc;
    }
}
