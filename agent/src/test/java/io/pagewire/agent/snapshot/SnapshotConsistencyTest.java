package io.pagewire.agent.snapshot;

import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.linux.NativeMemory;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Proof of consistency: vCPUs (native writers) write throughout a live snapshot, and the image equals RAM at the
 * start instant, byte for byte, including pages written many times during the snapshot and pages written only
 * after the background pass saved them. The start instant is captured by copying RAM while the engine holds the
 * guest paused.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class SnapshotConsistencyTest {
    static final long MIB = 1 << 20;
    static final long RAM = 48 * MIB;

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of(Backing.ANONYMOUS, FaultLatencyPolicy.ADAPTIVE, true),
                Arguments.of(Backing.MEMFD, FaultLatencyPolicy.ADAPTIVE, true),
                Arguments.of(Backing.MEMFD, FaultLatencyPolicy.NONE, true),
                Arguments.of(Backing.ANONYMOUS, FaultLatencyPolicy.SEED, false));
    }

    /** Fills RAM as a guest's would be: a quarter never touched, some pages written with zeros, the rest data. */
    static void fill(GuestRegion region) {
        MemorySegment m = region.memory();
        long ps = region.pageSize();
        for (long p = 0; p < region.pageCount(); p++) {
            long kind = (p >>> 4) % 8;
            if (kind == 1 || kind == 5) {
                continue; // never populated
            }
            if (kind == 3) {
                m.asSlice(p * ps, ps).fill((byte) 0); // populated, zero
                continue;
            }
            for (long off = 64; off < ps; off += 512) {
                m.set(ValueLayout.JAVA_LONG_UNALIGNED, p * ps + off, p * 0x9E3779B97F4A7C15L + off);
            }
        }
    }

    static RegionSpec spec(Backing backing) {
        return backing == Backing.MEMFD ? RegionSpec.memfd("pc.ram", RAM) : RegionSpec.anonymous("pc.ram", RAM);
    }

    @ParameterizedTest(name = "{0} {1} copy-before-write={2}")
    @MethodSource("cases")
    void imageEqualsRamAtTheStartInstant(Backing backing, FaultLatencyPolicy policy, boolean copyBeforeWrite, @TempDir Path dir)
            throws Exception {
        try (GuestRam ram = GuestRam.create(); Arena arena = Arena.ofShared()) {
            GuestRegion region = ram.open(spec(backing));
            String cause = SnapshotEngine.unavailabilityCause(List.of(region));
            assumeTrue(cause == null, "synchronous userfaultfd write-protection (UFFD_FEATURE_WP_UNPOPULATED): " + cause);
            fill(region);
            MemorySegment atStart = arena.allocate(RAM, 4096);
            Path file = dir.resolve("snap.pwsnap");
            // Two vCPUs as fast as they can over the first 16 MiB (data, holes and zero pages alike), and storage
            // capped at 96 MiB/s so the snapshot lasts long enough for pages to be written many times.
            SyntheticGuest guest = new SyntheticGuest(region.memory(), region.pageSize(),
                    new SyntheticGuest.Config(2, 0, SyntheticGuest.Pattern.RANDOM, 16 * MIB, 7, SyntheticGuest.Access.STAMP), p -> true).start();
            SnapshotStats stats;
            try (SnapshotFileWriter writer = SnapshotFileWriter.create(file, List.of(new SnapshotLayout.RegionSpec("pc.ram", RAM,
                    region.pageSize())), new StorageOptions(96 * MIB, 0));
                 SnapshotEngine engine = SnapshotEngine.start(List.of(region), Map.of(), guest, writer,
                         new SnapshotConfig().policy(policy).copyBeforeWrite(copyBeforeWrite).poolBytes(MIB).writerThreads(2),
                         () -> NativeMemory.copy(region.memory(), 0, atStart, 0, RAM))) {
                engine.await();
                stats = engine.stats();
                System.out.println(backing + " " + policy + ": " + stats.summary());
                guest.close();
                // Evidence that the case is the hard one: count pages changed since the start instant.
                MemorySegment now = arena.allocate(RAM, 4096);
                NativeMemory.copy(region.memory(), 0, now, 0, RAM);
                long changed = 0;
                long manyTimes = 0;
                long afterBackground = 0;
                long ps = region.pageSize();
                for (long p = 0; p < region.pageCount(); p++) {
                    long writes = 0;
                    for (int v = 0; v < 2; v++) {
                        writes += now.get(ValueLayout.JAVA_LONG, p * ps + 8L * v) - atStart.get(ValueLayout.JAVA_LONG, p * ps + 8L * v);
                    }
                    if (writes > 0) {
                        changed++;
                        if (writes >= 2) {
                            manyTimes++;
                        }
                        if (!engine.savedByFault(0, p)) {
                            afterBackground++;
                        }
                    }
                }
                assertTrue(stats.faultPages() > 0, "no write fault was served: " + stats.summary());
                assertTrue(manyTimes > 0, "no page was written twice during the snapshot: " + stats.summary());
                assertTrue(afterBackground > 0, "no page was written after the background pass saved it: " + stats.summary());
                assertTrue(changed > stats.faultPages() / 2, "changed " + changed + " pages, faults " + stats.faultPages());
            }
            try (SnapshotFile snap = SnapshotFile.open(file)) {
                MemorySegment image = snap.mapPrivate(0, arena);
                long at = image.mismatch(atStart);
                assertEquals(-1, at, "the image differs from RAM at the start instant at byte " + at + " (page " + (at / region.pageSize())
                        + "): " + stats.summary());
                assertTrue(snap.verify(0, image).ok());
                assertEquals(stats.dataPages(), snap.dataPages());
                assertEquals(region.pageCount(), snap.dataPages() + snap.zeroPages(), stats.summary());
            }
        }
    }
}
