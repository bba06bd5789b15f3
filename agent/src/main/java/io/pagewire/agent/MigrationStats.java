package io.pagewire.agent;

import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The counters of one migration, named as QEMU's {@code query-migrate} names them where the
 * meaning is the same (see {@code migration/migration-stats.h} and the QAPI schema): one object,
 * each counter commented. Updated by the engine's threads, read by anyone (each value is
 * current; a set of reads is not a snapshot).
 */
public final class MigrationStats {

    /** QEMU's MigrationStatus values that pagewire uses. */
    public enum Status {
        SETUP("setup"), ACTIVE("active"), POSTCOPY_ACTIVE("postcopy-active"), POSTCOPY_PAUSED("postcopy-paused"),
        POSTCOPY_RECOVER("postcopy-recover"), DEVICE("device"), COMPLETED("completed"),
        FAILED("failed"), CANCELLED("cancelled");

        private final String qemuName;

        Status(String qemuName) {
            this.qemuName = qemuName;
        }

        /** @return the name QEMU prints */
        public String qemuName() {
            return qemuName;
        }
    }

    private volatile Status status = Status.SETUP;
    private volatile String errorDesc;
    private final long startNs = System.nanoTime();
    /** setup-time: from start until the first page was offered (handshake, tracking started). */
    private volatile long setupNs = -1;
    /** total-time: from start until completion (or failure). */
    private volatile long endNs = -1;
    /** downtime: from pausing the guest until the destination acknowledged it has every page. */
    private volatile long downtimeNs = -1;
    /** Part of the downtime spent collecting the final dirty log and sending the last round. */
    private volatile long downtimeFinalRoundNs = -1;
    /** Part of the downtime spent waiting for the destination's completion acknowledgement. */
    private volatile long downtimeCompletionNs = -1;
    /** Downtime the engine expected when it decided to switch over. */
    private volatile long expectedDowntimeNs = -1;
    /** total: bytes of guest RAM. */
    private volatile long totalBytes;
    /** transferred: bytes written to the transport, frame headers included. */
    private final AtomicLong transferred = new AtomicLong();
    /** remaining: bytes dirty and not yet sent, as of the last dirty sync. */
    private volatile long remainingBytes;
    /** duplicate: zero pages sent as zero runs (QEMU counts zero pages as "duplicate"). */
    private final AtomicLong duplicate = new AtomicLong();
    /** skipped: ballooned pages sent as skip runs (neither scanned nor sent). */
    private final AtomicLong skipped = new AtomicLong();
    /** normal: pages sent with their data. */
    private final AtomicLong normal = new AtomicLong();
    /** normal-bytes: bytes of those pages. */
    private final AtomicLong normalBytes = new AtomicLong();
    /** Page size, for normal-bytes. */
    private volatile long pageSize = 4096;
    /** dirty-sync-count: how many times the dirty log was collected (QEMU: iterations of the bitmap sync). */
    private final AtomicLong dirtySyncCount = new AtomicLong();
    /** dirty-pages-rate: pages dirtied per second, measured over the last round. */
    private volatile long dirtyPagesRate;
    /** precopy rounds, the bulk round included. */
    private final AtomicLong rounds = new AtomicLong();
    /** cpu-throttle-percentage: the auto-converge throttle in force. */
    private volatile int cpuThrottlePercentage;
    /** Bandwidth estimate used for the switchover decision, bytes per second. */
    private volatile long bandwidthBytesPerSec;
    /** postcopy-requests: page requests the destination sent (one per faulting page). */
    private volatile long postcopyRequests;
    /** postcopy-bytes: page bytes answered on the urgent lane. */
    private volatile long postcopyBytes;
    /** Requested pages the background push had taken already (in flight behind bulk data). */
    private volatile long postcopyInFlight;
    /** postcopy-recoveries: times postcopy resumed over a new connection after losing one. */
    private final AtomicLong postcopyRecoveries = new AtomicLong();
    /** postcopy-paused-time: nanoseconds spent in postcopy-paused / postcopy-recover. */
    private final AtomicLong postcopyPausedNs = new AtomicLong();
    /** Why postcopy paused last (the lost connection's error), or null. */
    private volatile String postcopyPausedReason;
    /** verify-time: from completion (the acknowledgement) to the verification verdict; -1 when not verified. */
    private volatile long verifyNs = -1;
    /** verify-read: bytes of RAM this side read to checksum it (never-populated runs are computed, not read). */
    private volatile long verifyReadBytes = -1;
    /** Per-round: pages sent and milliseconds, for the report. */
    private final List<long[]> roundLog = new ArrayList<>();

    // ---- updates (engine) ----

    public void status(Status s) {
        status = s;
    }

    public void failed(String description) {
        errorDesc = description;
        status = Status.FAILED;
        end();
    }

    public void setupDone() {
        if (setupNs < 0) {
            setupNs = System.nanoTime() - startNs;
        }
    }

    public void end() {
        if (endNs < 0) {
            endNs = System.nanoTime() - startNs;
        }
    }

    public void totalBytes(long b) {
        totalBytes = b;
    }

    public void pageSize(long b) {
        pageSize = b;
    }

    public void addTransferred(long b) {
        transferred.addAndGet(b);
    }

    public void remainingBytes(long b) {
        remainingBytes = b;
    }

    public void addNormal(long pages, long bytes) {
        normal.addAndGet(pages);
        normalBytes.addAndGet(bytes);
    }

    public void addDuplicate(long pages) {
        duplicate.addAndGet(pages);
    }

    public void addSkipped(long pages) {
        skipped.addAndGet(pages);
    }

    public void dirtySync() {
        dirtySyncCount.incrementAndGet();
    }

    public void dirtyPagesRate(long r) {
        dirtyPagesRate = r;
    }

    public synchronized void round(long pages, long ns) {
        round(pages, ns, -1, -1, -1, -1);
    }

    /**
     * Records a round.
     *
     * @param pages pages the round covered
     * @param ns how long it took
     * @param bytes bytes it sent
     * @param collectNs how long the dirty-log collect before it took (-1: none)
     * @param bandwidth bandwidth estimate after it, bytes per second
     * @param expectedDowntimeNs expected downtime computed before it (-1: none)
     */
    public synchronized void round(long pages, long ns, long bytes, long collectNs, long bandwidth, long expectedDowntimeNs) {
        rounds.incrementAndGet();
        roundLog.add(new long[]{pages, ns, bytes, collectNs, bandwidth, expectedDowntimeNs});
    }

    /**
     * @param requests page requests the source received
     * @param bytes page bytes it answered on the urgent lane
     * @param inFlight requested pages the background push had taken already (answered all the same)
     */
    public void postcopy(long requests, long bytes, long inFlight) {
        postcopyRequests = requests;
        postcopyBytes = bytes;
        postcopyInFlight = inFlight;
    }

    /** Postcopy lost its connection and pauses (QEMU: postcopy-paused) for {@code reason}. */
    public void postcopyPaused(String reason) {
        postcopyPausedReason = reason;
        status = Status.POSTCOPY_PAUSED;
    }

    /** Postcopy resumed over a new connection after {@code pausedNs} paused. */
    public void postcopyRecovered(long pausedNs) {
        postcopyPausedNs.addAndGet(pausedNs);
        postcopyRecoveries.incrementAndGet();
        status = Status.POSTCOPY_ACTIVE;
    }

    /** @return times postcopy resumed over a new connection */
    public long postcopyRecoveries() {
        return postcopyRecoveries.get();
    }

    /** @return why postcopy paused last, or null */
    public String postcopyPausedReason() {
        return postcopyPausedReason;
    }

    /** Postcopy broke after the guest may have started on the destination (QEMU: postcopy-paused). */
    public void postcopyFailed() {
        errorDesc = (errorDesc == null ? "" : errorDesc + "; ") + "postcopy was running: the guest stays paused on the source (its state is split)";
    }

    public long postcopyRequests() {
        return postcopyRequests;
    }

    public void throttle(int percent) {
        cpuThrottlePercentage = percent;
    }

    public void bandwidth(long bytesPerSec) {
        bandwidthBytesPerSec = bytesPerSec;
    }

    public void downtime(long totalNs, long finalRoundNs, long completionNs) {
        downtimeNs = totalNs;
        downtimeFinalRoundNs = finalRoundNs;
        downtimeCompletionNs = completionNs;
    }

    public void expectedDowntime(long ns) {
        expectedDowntimeNs = ns;
    }

    /**
     * Verification ended (with any verdict).
     *
     * @param ns from completion to the verdict
     * @param readBytes bytes of RAM read for the checksum
     */
    public void verified(long ns, long readBytes) {
        verifyNs = ns;
        verifyReadBytes = readBytes;
    }

    /** @return verify-time in ms, -1 when not verified */
    public long verifyTimeMs() {
        return verifyNs < 0 ? -1 : ms(verifyNs);
    }

    /** @return verify-read: bytes read for the checksum, -1 when not verified */
    public long verifyReadBytes() {
        return verifyReadBytes;
    }

    // ---- reads ----

    public Status status() {
        return status;
    }

    public String errorDesc() {
        return errorDesc;
    }

    public long totalTimeMs() {
        return ms(endNs >= 0 ? endNs : System.nanoTime() - startNs);
    }

    public long setupTimeMs() {
        return setupNs < 0 ? 0 : ms(setupNs);
    }

    /** @return the downtime the engine expected when it decided to switch over, in ms (-1: it never decided) */
    public long expectedDowntimeMs() {
        long ns = expectedDowntimeNs;
        return ns < 0 ? -1 : ns / 1_000_000;
    }

    public long downtimeMs() {
        return downtimeNs < 0 ? -1 : ms(downtimeNs);
    }

    /** @return downtime in microseconds, -1 before switchover */
    public long downtimeUs() {
        return downtimeNs < 0 ? -1 : downtimeNs / 1000;
    }

    public void transferred(long b) {
        transferred.set(b);
    }

    public long transferred() {
        return transferred.get();
    }

    public long normal() {
        return normal.get();
    }

    public long duplicate() {
        return duplicate.get();
    }

    public long skipped() {
        return skipped.get();
    }

    public long rounds() {
        return rounds.get();
    }

    public long dirtySyncCount() {
        return dirtySyncCount.get();
    }

    public long remainingBytes() {
        return remainingBytes;
    }

    public int throttlePercent() {
        return cpuThrottlePercentage;
    }

    public long totalBytes() {
        return totalBytes;
    }

    /** @return average throughput so far in megabits per second, as QEMU's {@code mbps} */
    public double mbps() {
        long ms = Math.max(1, totalTimeMs());
        return transferred.get() * 8.0 / 1e6 / (ms / 1000.0);
    }

    private static long ms(long ns) {
        return Math.round(ns / 1e6);
    }

    private static String ms3(long ns) {
        return ns < 0 ? "-" : String.format(Locale.ROOT, "%.1f", ns / 1e6);
    }

    /** @return the statistics in the layout of QEMU's {@code info migrate} */
    public synchronized String infoMigrate() {
        List<String> l = new ArrayList<>();
        l.add("Migration status: " + status.qemuName() + (errorDesc != null ? " (" + errorDesc + ")" : ""));
        l.add("total time: " + totalTimeMs() + " ms");
        if (downtimeNs >= 0) {
            l.add("downtime: " + ms3(downtimeNs) + " ms (final round " + ms3(downtimeFinalRoundNs) + " ms, completion "
                    + ms3(downtimeCompletionNs) + " ms; expected " + ms3(expectedDowntimeNs) + " ms)");
        }
        l.add("setup: " + setupTimeMs() + " ms");
        l.add("transferred ram: " + transferred.get() / 1024 + " kbytes");
        l.add(String.format(Locale.ROOT, "throughput: %.2f mbps", mbps()));
        l.add("remaining ram: " + remainingBytes / 1024 + " kbytes");
        l.add("total ram: " + totalBytes / 1024 + " kbytes");
        l.add("duplicate: " + duplicate.get() + " pages");
        l.add("skipped: " + skipped.get() + " pages");
        l.add("normal: " + normal.get() + " pages");
        l.add("normal bytes: " + normalBytes.get() / 1024 + " kbytes");
        l.add("dirty sync count: " + dirtySyncCount.get());
        l.add("dirty pages rate: " + dirtyPagesRate + " pages");
        l.add("precopy rounds: " + rounds.get());
        if (cpuThrottlePercentage > 0) {
            l.add("cpu throttle percentage: " + cpuThrottlePercentage);
        }
        if (postcopyRequests > 0 || status == Status.POSTCOPY_ACTIVE) {
            l.add("postcopy request count: " + postcopyRequests + " (" + postcopyInFlight + " for pages the push had taken already)");
            l.add("postcopy bytes: " + postcopyBytes);
        }
        if (verifyNs >= 0) {
            l.add("verify time: " + ms3(verifyNs) + " ms (" + verifyReadBytes / 1024 + " of " + totalBytes / 1024
                    + " kbytes read, the rest never populated)");
        }
        if (postcopyRecoveries.get() > 0 || postcopyPausedReason != null) {
            l.add("postcopy recoveries: " + postcopyRecoveries.get() + " (paused " + postcopyPausedNs.get() / 1_000_000 + " ms in all; last cause: "
                    + postcopyPausedReason + ")");
        }
        return String.join(System.lineSeparator(), l);
    }

    /** @return the statistics as a JSON object with QEMU's {@code query-migrate} field names (built by {@link Json}) */
    public synchronized ObjectNode toJson() {
        ObjectNode o = Json.object();
        o.put("status", status.qemuName());
        if (errorDesc != null) {
            o.put("error-desc", errorDesc);
        }
        o.put("total-time", totalTimeMs());
        o.put("setup-time", setupTimeMs());
        o.put("downtime", downtimeMs());
        o.put("downtime-us", downtimeUs());
        ObjectNode breakdown = o.putObject("downtime-breakdown");
        breakdown.put("final-round-us", downtimeFinalRoundNs < 0 ? -1 : downtimeFinalRoundNs / 1000);
        breakdown.put("completion-us", downtimeCompletionNs < 0 ? -1 : downtimeCompletionNs / 1000);
        o.put("expected-downtime", expectedDowntimeNs < 0 ? -1 : ms(expectedDowntimeNs));
        ObjectNode ram = o.putObject("ram");
        ram.put("transferred", transferred.get());
        ram.put("remaining", remainingBytes);
        ram.put("total", totalBytes);
        ram.put("duplicate", duplicate.get());
        ram.put("skipped", skipped.get());
        ram.put("normal", normal.get());
        ram.put("normal-bytes", normalBytes.get());
        ram.put("mbps", Json.round(mbps(), 2));
        ram.put("dirty-sync-count", dirtySyncCount.get());
        ram.put("dirty-pages-rate", dirtyPagesRate);
        ram.put("page-size", pageSize);
        ram.put("precopy-rounds", rounds.get());
        ArrayNode rl = ram.putArray("rounds");
        for (long[] r : roundLog) {
            ObjectNode round = rl.addObject();
            round.put("pages", r[0]);
            round.put("ms", Json.round(r[1] / 1e6, 2));
            round.put("bytes", r[2]);
            round.put("collect-ms", Json.round(r[3] / 1e6, 2));
            round.put("mbps", Math.round(r[4] * 8 / 1e6));
            round.put("expected-downtime-ms", Json.round(r[5] / 1e6, 1));
        }
        ram.put("postcopy-requests", postcopyRequests);
        ram.put("postcopy-bytes", postcopyBytes);
        ram.put("postcopy-recoveries", postcopyRecoveries.get());
        ram.put("postcopy-paused-time", postcopyPausedNs.get() / 1_000_000);
        o.put("cpu-throttle-percentage", cpuThrottlePercentage);
        o.put("verify-time", verifyTimeMs());
        o.put("verify-read", verifyReadBytes);
        return o;
    }
}
