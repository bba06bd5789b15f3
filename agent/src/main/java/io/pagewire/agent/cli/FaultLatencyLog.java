package io.pagewire.agent.cli;

import io.pagewire.agent.DestinationMigration;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramLogWriter;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * {@code receive --fault-latency-log FILE}: postcopy fault latency over time as an HdrHistogram
 * interval log ({@code HistogramLogWriter}: one compressed histogram per interval, values in
 * microseconds), readable by HdrHistogram's {@code HistogramLogProcessor} and plotters.
 */
final class FaultLatencyLog implements AutoCloseable {
    private final DestinationMigration dst;
    private final PrintStream file;
    private final HistogramLogWriter writer;
    private final Periodic periodic;

    private FaultLatencyLog(DestinationMigration dst, Path path, Duration interval) throws IOException {
        this.dst = dst;
        this.file = new PrintStream(Files.newOutputStream(path), false, StandardCharsets.UTF_8);
        this.writer = new HistogramLogWriter(file);
        long now = System.currentTimeMillis();
        writer.outputComment("pagewire postcopy fault latency (fault read to page mapped), microseconds, every " + interval.toMillis() + " ms");
        writer.outputLogFormatVersion();
        writer.setBaseTime(now);
        writer.outputBaseTime(now);
        writer.outputStartTime(now);
        writer.outputLegend();
        dst.faultLatencyInterval(); // starts the first interval now
        periodic = new Periodic("pagewire-fault-latency-log", interval, this::interval);
    }

    /** @return the log, or null when {@code path} is null */
    static FaultLatencyLog start(DestinationMigration dst, Path path, Duration interval) {
        if (path == null) {
            return null;
        }
        try {
            return new FaultLatencyLog(dst, path, interval == null ? Duration.ofSeconds(1) : interval);
        } catch (IOException e) {
            throw new UncheckedIOException("--fault-latency-log " + path + ": " + e.getMessage(), e);
        }
    }

    private synchronized void interval() {
        Histogram h = dst.faultLatencyInterval();
        writer.outputIntervalHistogram(h.getStartTimeStamp() / 1000.0, h.getEndTimeStamp() / 1000.0, h, 1000.0); // ns -> us
        file.flush();
    }

    @Override
    public void close() {
        periodic.close(); // and the last interval
        file.close();
    }
}
