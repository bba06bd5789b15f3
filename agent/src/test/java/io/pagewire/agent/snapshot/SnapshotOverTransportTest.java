package io.pagewire.agent.snapshot;

import io.pagewire.agent.ChildJvm;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.linux.NativeMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A live snapshot sent over TCP to a second JVM ({@code pagewire receive --snapshot FILE}), with vCPUs writing
 * throughout: the file the other JVM wrote equals RAM at the start instant.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class SnapshotOverTransportTest {
    static final long MIB = 1 << 20;
    static final long RAM = 32 * MIB;
    private final List<Process> children = new ArrayList<>();

    @AfterEach
    void killChildren() throws InterruptedException {
        for (Process p : children) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @ParameterizedTest
    @EnumSource(value = Backing.class, names = {"ANONYMOUS", "MEMFD"})
    void theReceiversFileEqualsRamAtTheStartInstant(Backing backing, @TempDir Path dir) throws Exception {
        Path file = dir.resolve("received.pwsnap");
        try (GuestRam ram = GuestRam.create(); Arena arena = Arena.ofShared()) {
            GuestRegion region = ram.open(backing == Backing.MEMFD ? io.pagewire.ramtracker.RegionSpec.memfd("pc.ram", RAM)
                    : io.pagewire.ramtracker.RegionSpec.anonymous("pc.ram", RAM));
            String cause = SnapshotEngine.unavailabilityCause(List.of(region));
            assumeTrue(cause == null, "synchronous userfaultfd write-protection (UFFD_FEATURE_WP_UNPOPULATED): " + cause);
            SnapshotConsistencyTest.fill(region);

            Process dst = new ProcessBuilder(ChildJvm.command(List.of("receive", "--snapshot", file.toString(), "--listen", "tcp://127.0.0.1:0",
                    "--ram", Long.toString(RAM)))).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            children.add(dst);
            BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
            String listening = out.readLine();
            assertNotNull(listening, "the receiver ended without listening");
            assertTrue(listening.startsWith("LISTENING "), listening);
            String uri = listening.substring("LISTENING ".length());

            MemorySegment atStart = arena.allocate(RAM, 4096);
            SyntheticGuest guest = new SyntheticGuest(region.memory(), region.pageSize(),
                    new SyntheticGuest.Config(2, 0, SyntheticGuest.Pattern.RANDOM, 8 * MIB, 11, SyntheticGuest.Access.STAMP), p -> true).start();
            SnapshotStats stats;
            try (TransportSnapshotSink sink = TransportSnapshotSink.connect(uri, List.of(region));
                 SnapshotEngine engine = SnapshotEngine.start(List.of(region), Map.of(), guest, sink,
                         new SnapshotConfig().policy(FaultLatencyPolicy.URGENT).poolBytes(MIB),
                         () -> NativeMemory.copy(region.memory(), 0, atStart, 0, RAM))) {
                engine.await();
                stats = engine.stats();
            } finally {
                guest.close();
            }
            String line;
            String received = null;
            while ((line = out.readLine()) != null) {
                if (line.startsWith("RECEIVED")) {
                    received = line;
                }
            }
            assertTrue(dst.waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, dst.exitValue(), "receiver exit; " + stats.summary());
            assertNotNull(received, "the receiver did not report the snapshot");
            assertTrue(stats.faultPages() > 0, "no write fault during the snapshot: " + stats.summary());
            try (SnapshotFile snap = SnapshotFile.open(file)) {
                MemorySegment image = snap.mapPrivate(0, arena);
                long at = image.mismatch(atStart);
                assertEquals(-1, at, "the received image differs from RAM at the start instant at byte " + at + ": " + stats.summary());
                assertTrue(snap.verify(0, image).ok());
                assertEquals(stats.dataPages(), snap.dataPages());
            }
        }
    }
}
