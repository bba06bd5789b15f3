package io.pagewire.agent;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import org.HdrHistogram.EncodableHistogram;
import org.HdrHistogram.HistogramLogReader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The destination's timelines in a real postcopy migration (destination in a child JVM, its guest
 * faulting on pages that have not arrived): statistics as JSON lines, and fault latency as an
 * HdrHistogram interval log whose intervals add up to the destination's own fault count.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TimelinesTest {
    private static final long MIB = 1 << 20;

    @Test
    void destinationWritesStatsLinesAndAFaultLatencyIntervalLog(@TempDir Path dir) throws Exception {
        long ram = 32 * MIB;
        Path stats = dir.resolve("dst-stats.jsonl");
        Path faults = dir.resolve("faults.hlog");
        Process dst = new ProcessBuilder(ChildJvm.command(List.of("receive", "--listen", "tcp://127.0.0.1:0", "--ram", Long.toString(ram),
                "--quiet", "--postcopy", "--vcpus", "1", "--pattern", "random", "--working-set", "32M", "--dirty-rate", "64M",
                "--stats-interval", "50ms", "--stats-file", stats.toString(), "--fault-latency-log", faults.toString())))
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
            String uri = null;
            for (String line; uri == null && (line = out.readLine()) != null; ) {
                if (line.startsWith("LISTENING ")) {
                    uri = line.substring("LISTENING ".length());
                }
            }
            assertTrue(uri != null, "the destination printed where it listens");
            SourceMigration m;
            try (GuestImage image = GuestImage.create(ram, 0, 0, 3);
                 SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                         new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.IDLE, 0, 11), p -> true)) {
                guest.start();
                // Postcopy at once, the push capped: the destination's guest faults on pages not there yet.
                m = new SourceMigration(image.ram(), guest, image.balloons(),
                        new MigrationConfig().postcopy(true).postcopyAfterRounds(0).maxBandwidthBytesPerSec(8 * MIB));
                MigrationStats s = m.run(uri);
                assertEquals(MigrationStats.Status.COMPLETED, s.status(), s.infoMigrate());
            }
            assertTrue(dst.waitFor(30, TimeUnit.SECONDS), "destination did not exit");
            assertEquals(0, dst.exitValue());

            List<String> lines = Files.readAllLines(stats);
            assertTrue(lines.size() >= 2, "a line every 50 ms and one at the end: " + lines.size());
            for (String l : lines) {
                var o = Json.parseObject(l, "a stats line");
                assertEquals(Json.STATS_SCHEMA, o.get("schema").asString());
                assertEquals("destination", o.get("side").asString());
                assertTrue(o.get("time").asLong() > 0, l);
            }
            assertEquals("completed", Json.parseObject(lines.getLast(), "the last line").get("status").asString());

            long logged = 0;
            int intervals = 0;
            HistogramLogReader reader = new HistogramLogReader(faults.toFile());
            for (EncodableHistogram h; (h = reader.nextIntervalHistogram()) != null; ) {
                logged += ((org.HdrHistogram.Histogram) h).getTotalCount();
                intervals++;
            }
            long counted = Json.parseObject(m.postcopyStats(), "postcopy stats").get("fault-latency-us").get("count").asLong();
            assertTrue(counted > 0, "the guest faulted on pages that had not arrived: " + m.postcopyStats());
            assertTrue(intervals >= 1 && logged >= counted, "the log holds every fault counted (" + logged + " logged in " + intervals
                    + " intervals, " + counted + " counted)");
        } finally {
            dst.destroyForcibly();
        }
    }
}
