package io.pagewire.agent.cli;

import io.pagewire.ramtracker.GuestRegion;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

import java.lang.foreign.MemorySegment;
import java.util.zip.CRC32C;

/**
 * {@code receive --debug-ram-report}: what a migration left in a region, for an oracle outside the
 * process (the hostile source, {@code conformance/hostile_source.py}). A fresh destination's RAM is
 * zero, so every page that is not zero afterwards was written by the migration: the report lists
 * those pages with the CRC32C of each, and the harness checks each against the pages its stream
 * legitimately sent there. Reads plain (not userfaultfd-registered) memory from Java: never with
 * postcopy.
 */
final class RamReport {
    private RamReport() {
    }

    /**
     * @param region a region of plain memory (no postcopy)
     * @param migration the migration's number in this process, from 1
     * @param outcome the outcome line the migration earned
     * @return one JSON object: migration, outcome, region, pages (its page count) and nonZero, an array of
     *         [page, CRC32C, end] for every page that holds a byte other than zero, in page order, where end is one past
     *         its last non-zero byte (the page is zero from there on: a page a failed migration left half-written is
     *         told from a misplaced one by it)
     */
    static ObjectNode of(GuestRegion region, int migration, String outcome) {
        ObjectNode doc = io.pagewire.agent.Json.object();
        doc.put("migration", migration);
        doc.put("outcome", outcome);
        doc.put("region", region.name());
        doc.put("pages", region.pageCount());
        ArrayNode nonZero = doc.putArray("nonZero");
        MemorySegment zero = MemorySegment.ofArray(new byte[(int) region.pageSize()]);
        CRC32C crc = new CRC32C();
        for (long p = 0; p < region.pageCount(); p++) {
            MemorySegment page = region.page(p);
            if (page.mismatch(zero) >= 0) {
                crc.reset();
                crc.update(page.asByteBuffer());
                long end = page.byteSize();
                while (page.get(java.lang.foreign.ValueLayout.JAVA_BYTE, end - 1) == 0) {
                    end--;
                }
                nonZero.addArray().add(p).add(crc.getValue()).add(end);
            }
        }
        return doc;
    }

    /** Zeroes the pages a report listed: the region is a fresh destination's again. */
    static void zeroReported(GuestRegion region, ObjectNode report) {
        for (var entry : report.get("nonZero")) {
            region.page(entry.get(0).asLong()).fill((byte) 0);
        }
    }
}
