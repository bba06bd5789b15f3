package io.pagewire.agent.snapshot;

import io.pagewire.ramtracker.linux.Mappings;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The snapshot file format: pages out of order land at their offsets, zero pages stay holes, restore maps or
 * loads the same bytes, and a torn or damaged file is refused or its bad page named.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SnapshotFileTest {
    static final long PAGE = 4096;
    static final long PAGES = 2048; // 8 MiB
    static final List<SnapshotLayout.RegionSpec> REGIONS = List.of(new SnapshotLayout.RegionSpec("pc.ram", PAGES * PAGE, PAGE),
            new SnapshotLayout.RegionSpec("vga.vram", 64 * PAGE, PAGE));

    /** Writes every third page of both regions in reverse order, urgent and background mixed; returns the expected RAM. */
    static MemorySegment[] write(Path file, Arena arena, boolean finish) {
        MemorySegment[] ram = {arena.allocate(PAGES * PAGE, 4096), arena.allocate(64 * PAGE, 4096)};
        try (SnapshotFileWriter w = SnapshotFileWriter.create(file, REGIONS, StorageOptions.NONE)) {
            long data = 0;
            for (int r = 0; r < 2; r++) {
                long pages = ram[r].byteSize() / PAGE;
                for (long p = pages - 1; p >= 0; p--) {
                    if (p % 3 != 0) {
                        continue; // a zero page: never given, stays a hole
                    }
                    for (long off = 0; off < PAGE; off += 8) {
                        ram[r].set(ValueLayout.JAVA_LONG, p * PAGE + off, (r + 1) * 1_000_003L * p + off + 1);
                    }
                    w.pages(r, p, 1, ram[r].asSlice(p * PAGE, PAGE), p % 2 == 0);
                    data++;
                }
            }
            if (finish) {
                w.finish(new SnapshotSink.SnapshotSummary(data, PAGES + 64 - data, 42));
                assertTrue(w.finished());
            }
        }
        return ram;
    }

    @Test
    void restoredByMapAndByLoadEqualsWhatWasWritten(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("s.pwsnap");
        try (Arena arena = Arena.ofShared()) {
            MemorySegment[] ram = write(file, arena, true);
            try (SnapshotFile snap = SnapshotFile.open(file)) {
                assertEquals(42, snap.startEpochNs());
                assertEquals(2, snap.regions().size());
                for (int r = 0; r < 2; r++) {
                    SnapshotLayout.Region region = snap.regions().get(r);
                    assertEquals(0, region.dataOffset() % SnapshotLayout.DATA_ALIGN, "data area is 2 MiB aligned");
                    MemorySegment mapped = snap.mapPrivate(r, arena);
                    assertEquals(-1, mapped.mismatch(ram[r]), "mapped region " + r);
                    MemorySegment loaded = Mappings.mapAnonymous(ram[r].byteSize(), false, arena);
                    long read = snap.load(r, loaded);
                    assertEquals(-1, loaded.mismatch(ram[r]), "loaded region " + r);
                    // Sparse: zero pages were never written, so SEEK_DATA finds less data than the region holds.
                    assertTrue(read < ram[r].byteSize(), "holes are not read: " + read);
                    assertTrue(snap.verify(r, mapped).ok());
                    // A private mapping's writes never reach the file.
                    mapped.set(ValueLayout.JAVA_LONG, 0, -1L);
                }
            }
            try (SnapshotFile again = SnapshotFile.open(file)) {
                assertTrue(again.verify(0, again.mapPrivate(0, arena)).ok());
            }
        }
    }

    @Test
    void aFileWithoutCompletionMarkerIsRefusedAsIncomplete(@TempDir Path dir) {
        Path file = dir.resolve("torn.pwsnap");
        try (Arena arena = Arena.ofShared()) {
            write(file, arena, false);
        }
        SnapshotException e = assertThrows(SnapshotException.class, () -> SnapshotFile.open(file));
        assertTrue(e.getMessage().contains("incomplete"), e.getMessage());
    }

    @Test
    void aTruncatedFileIsRefused(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("cut.pwsnap");
        try (Arena arena = Arena.ofShared()) {
            write(file, arena, true);
        }
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.setLength(raf.length() - 4096); // the marker page is gone
        }
        SnapshotException e = assertThrows(SnapshotException.class, () -> SnapshotFile.open(file));
        assertTrue(e.getMessage().contains("truncated or torn"), e.getMessage());
    }

    @Test
    void aDamagedMarkerOrHeaderIsRefused(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("bad.pwsnap");
        long marker;
        try (Arena arena = Arena.ofShared()) {
            write(file, arena, true);
        }
        try (SnapshotFile snap = SnapshotFile.open(file)) {
            marker = snap.layout().markerOffset();
        }
        flip(file, marker + 20);
        SnapshotException e = assertThrows(SnapshotException.class, () -> SnapshotFile.open(file));
        assertTrue(e.getMessage().contains("marker checksum mismatch"), e.getMessage());
        flip(file, marker + 20);
        flip(file, 64 + 70); // inside region 0's page size
        e = assertThrows(SnapshotException.class, () -> SnapshotFile.open(file));
        assertTrue(e.getMessage().contains("header checksum mismatch"), e.getMessage());
    }

    @Test
    void aChangedPageIsNamedByVerification(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("flip.pwsnap");
        long dataOffset;
        try (Arena arena = Arena.ofShared()) {
            write(file, arena, true);
            try (SnapshotFile snap = SnapshotFile.open(file)) {
                dataOffset = snap.regions().get(0).dataOffset();
            }
            flip(file, dataOffset + 300 * PAGE + 17); // page 300: data
            flip(file, dataOffset + 301 * PAGE + 5);  // page 301: was a hole
            try (SnapshotFile snap = SnapshotFile.open(file)) {
                SnapshotFile.Verification v = snap.verify(0, snap.mapPrivate(0, arena));
                assertFalse(v.ok());
                assertEquals(2, v.mismatches());
                assertEquals(300, v.firstMismatch());
                assertTrue(snap.verify(1, snap.mapPrivate(1, arena)).ok());
            }
        }
    }

    @Test
    void notASnapshotIsNamed(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("other");
        Files.write(file, new byte[8192]);
        SnapshotException e = assertThrows(SnapshotException.class, () -> SnapshotFile.open(file));
        assertTrue(e.getMessage().contains("not a pagewire snapshot"), e.getMessage());
    }

    @Test
    void badLayoutValuesAreNamed() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new SnapshotLayout.RegionSpec("r", 4097, 4096));
        assertTrue(e.getMessage().contains("4097"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new SnapshotLayout.RegionSpec("r", 8192, 3000));
        assertTrue(e.getMessage().contains("3000"), e.getMessage());
    }

    static void flip(Path file, long offset) throws IOException {
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.seek(offset);
            int b = raf.read();
            raf.seek(offset);
            raf.write(b ^ 0x5a);
        }
    }
}
