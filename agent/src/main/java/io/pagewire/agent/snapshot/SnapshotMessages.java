package io.pagewire.agent.snapshot;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;

/**
 * The control messages a snapshot sends over a transport (docs/wire-protocol.md, "Snapshot messages"). The
 * pages travel as copies (the guest's page may change once its copy is taken), so they go in control frames,
 * faulted copies on the urgent lane, background copies on the background lane. Little-endian:
 *
 * <pre>
 * +--------+--------+--------+-----------------+---------+----------+------------------------+
 * | 0 magic "PWSS"  | 4 type | 6 region id     | 8 u64 first page   | 16 u32 count | 20 zero | 24 data (count * page size)
 * +--------+--------+--------+-----------------+---------+----------+------------------------+
 * type 1 PAGES: as drawn.
 * type 2 END (background lane, after every PAGES): 8 u64 data pages, 16 u64 zero pages, 24 u64 start instant (ns since
 *        the epoch); 32 bytes.
 * </pre>
 */
final class SnapshotMessages {
    static final int MAGIC = 0x53535750; // "PWSS" read little-endian
    static final short PAGES = 1;
    static final short END = 2;
    static final int HEADER = 24;
    static final int END_BYTES = 32;

    private SnapshotMessages() {
    }

    static void pagesHeader(MemorySegment m, int region, long firstPage, int count) {
        m.set(JAVA_INT_UNALIGNED, 0, MAGIC);
        m.set(JAVA_SHORT_UNALIGNED, 4, PAGES);
        m.set(JAVA_SHORT_UNALIGNED, 6, (short) region);
        m.set(JAVA_LONG_UNALIGNED, 8, firstPage);
        m.set(JAVA_INT_UNALIGNED, 16, count);
        m.set(JAVA_INT_UNALIGNED, 20, 0);
    }

    static void end(MemorySegment m, long dataPages, long zeroPages, long startEpochNs) {
        m.set(JAVA_INT_UNALIGNED, 0, MAGIC);
        m.set(JAVA_SHORT_UNALIGNED, 4, END);
        m.set(JAVA_SHORT_UNALIGNED, 6, (short) 0);
        m.set(JAVA_LONG_UNALIGNED, 8, dataPages);
        m.set(JAVA_LONG_UNALIGNED, 16, zeroPages);
        m.set(JAVA_LONG_UNALIGNED, 24, startEpochNs);
    }
}
