package io.pagewire.agent;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The JFR events a migration records, read back from a real recording of real migrations (destination in a child JVM). */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class FlightRecorderEventsTest {
    private static final long MIB = 1 << 20;

    private static Process destination(long ram) throws Exception {
        return new ProcessBuilder(ChildJvm.command(List.of("receive", "--listen", "tcp://127.0.0.1:0", "--ram", Long.toString(ram), "--quiet")))
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
    }

    private static String listening(BufferedReader out) throws Exception {
        for (String line; (line = out.readLine()) != null; ) {
            if (line.startsWith("LISTENING ")) {
                return line.substring("LISTENING ".length());
            }
        }
        throw new AssertionError("the destination ended without LISTENING");
    }

    private static List<RecordedEvent> events(Recording r, Path dir, String name) throws Exception {
        Path file = dir.resolve(name + ".jfr");
        r.dump(file);
        return RecordingFile.readAllEvents(file).stream().filter(e -> e.getEventType().getName().startsWith("pagewire.")).toList();
    }

    private static Recording recording() {
        Recording r = new Recording();
        for (String e : List.of("pagewire.MigrationPhase", "pagewire.MigrationRound", "pagewire.Downtime", "pagewire.MigrationFailed",
                "pagewire.ConnectionFailed", "pagewire.PostcopyFault")) {
            r.enable(e);
        }
        r.enable("pagewire.BackPressureStall").withThreshold(Duration.ZERO);
        r.start();
        return r;
    }

    @Test
    void aCompletedMigrationShowsItsPhasesRoundsAndDowntime(@TempDir Path dir) throws Exception {
        long ram = 64 * MIB;
        Process dst = destination(ram);
        try (Recording rec = recording()) {
            BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
            String uri = listening(out);
            MigrationStats stats;
            try (GuestImage image = GuestImage.create(ram, 0.25, 0, 3);
                 SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                         new SyntheticGuest.Config(1, 16 * MIB, SyntheticGuest.Pattern.RANDOM, 16 * MIB, 11), p -> true)) {
                guest.start();
                stats = new SourceMigration(image.ram(), guest, image.balloons(), new MigrationConfig()).run(uri);
            }
            assertEquals(MigrationStats.Status.COMPLETED, stats.status(), stats.infoMigrate());
            assertTrue(dst.waitFor(30, TimeUnit.SECONDS));
            rec.stop();
            List<RecordedEvent> events = events(rec, dir, "completed");
            List<String> phases = events.stream().filter(e -> e.getEventType().getName().equals("pagewire.MigrationPhase"))
                    .filter(e -> "source".equals(e.getString("side"))).map(e -> e.getString("phase") + "->" + e.getString("next")).toList();
            assertEquals(List.of("setup->active", "active->device", "device->completed"), phases, events.toString());
            List<RecordedEvent> rounds = events.stream().filter(e -> e.getEventType().getName().equals("pagewire.MigrationRound")).toList();
            assertEquals(stats.rounds(), rounds.size(), "one event per round: " + rounds);
            assertEquals(1, rounds.getFirst().getLong("round"));
            assertEquals(ram / 4096, rounds.getFirst().getLong("pages"), "the bulk round covers every page");
            List<RecordedEvent> downtime = events.stream().filter(e -> e.getEventType().getName().equals("pagewire.Downtime")).toList();
            assertEquals(1, downtime.size(), downtime.toString());
            assertEquals(stats.downtimeUs(), downtime.getFirst().getDuration("downtime").toNanos() / 1000);
            assertTrue(events.stream().noneMatch(e -> e.getEventType().getName().equals("pagewire.MigrationFailed")), events.toString());
        } finally {
            dst.destroyForcibly();
        }
    }

    @Test
    void aLostDestinationShowsTheConnectionFailureAndTheFailedMigration(@TempDir Path dir) throws Exception {
        long ram = 64 * MIB;
        Process dst = destination(ram);
        try (Recording rec = recording()) {
            BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
            String uri = listening(out);
            MigrationStats stats;
            try (GuestImage image = GuestImage.create(ram, 0, 0, 3);
                 SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                         new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.IDLE, 0, 11), p -> true)) {
                guest.start();
                // 4 MiB/s over 64 MiB: the bulk round is still running when the destination is killed.
                SourceMigration m = new SourceMigration(image.ram(), guest, image.balloons(), new MigrationConfig().maxBandwidthBytesPerSec(4 * MIB));
                Thread killer = Thread.ofPlatform().start(() -> {
                    while (m.stats().normal() < 256 && m.stats().status() != MigrationStats.Status.FAILED) {
                        LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
                    }
                    dst.destroyForcibly();
                });
                stats = m.run(uri);
                killer.join();
            }
            assertEquals(MigrationStats.Status.FAILED, stats.status(), stats.infoMigrate());
            rec.stop();
            List<RecordedEvent> events = events(rec, dir, "lost");
            List<RecordedEvent> failed = events.stream().filter(e -> e.getEventType().getName().equals("pagewire.ConnectionFailed")).toList();
            assertTrue(!failed.isEmpty(), events.toString());
            assertEquals("SOURCE", failed.getFirst().getString("role"));
            assertEquals("PEER", failed.getFirst().getString("origin"), failed.toString());
            List<RecordedEvent> migration = events.stream().filter(e -> e.getEventType().getName().equals("pagewire.MigrationFailed")).toList();
            assertEquals(1, migration.size(), events.toString());
            assertEquals(stats.errorDesc(), migration.getFirst().getString("reason"));
            assertEquals(stats.failureKind().name(), migration.getFirst().getString("kind"));
        } finally {
            dst.destroyForcibly();
        }
    }
}
