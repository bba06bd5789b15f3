package io.pagewire.agent.cli;

import io.pagewire.agent.Json;
import io.pagewire.agent.MigrationStats;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * {@code --stats-interval}: the statistics as JSON lines while a migration runs (a timeline to plot):
 * one line every interval and a last one at the end, each the statistics object without the
 * per-round log plus {@code time} (epoch ms). Bounded: one line per interval, written by one thread.
 */
final class StatsTicker implements AutoCloseable {
    private final MigrationStats stats;
    private final PrintWriter out;
    private final boolean ownsOut;
    private final Periodic periodic;

    private StatsTicker(MigrationStats stats, Duration interval, PrintWriter out, boolean ownsOut) {
        this.stats = stats;
        this.out = out;
        this.ownsOut = ownsOut;
        this.periodic = new Periodic("pagewire-stats-interval", interval, this::line);
    }

    /**
     * @param interval null: no lines (returns a ticker that does nothing)
     * @param file where to write, or null for {@code err}
     */
    static StatsTicker start(MigrationStats stats, Duration interval, Path file, PrintWriter err) {
        if (interval == null) {
            return null;
        }
        if (interval.isZero() || interval.isNegative()) {
            throw new IllegalArgumentException("--stats-interval " + interval.toMillis() + " ms: give a positive interval, e.g. 500ms");
        }
        if (file == null) {
            return new StatsTicker(stats, interval, err, false);
        }
        try {
            return new StatsTicker(stats, interval, new PrintWriter(Files.newBufferedWriter(file, StandardCharsets.UTF_8), false), true);
        } catch (IOException e) {
            throw new UncheckedIOException("--stats-file " + file + ": " + e.getMessage(), e);
        }
    }

    private void line() {
        String json = Json.write(stats.toJson(false).put("time", System.currentTimeMillis()));
        synchronized (out) {
            out.println(json);
            out.flush();
        }
    }

    @Override
    public void close() {
        periodic.close(); // and the final state
        if (ownsOut) {
            out.close();
        }
    }
}
