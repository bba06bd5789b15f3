package io.pagewire.agent.replica;

import io.pagewire.agent.Json;
import org.HdrHistogram.Histogram;
import tools.jackson.databind.node.ObjectNode;

/**
 * The primary's replication counters (one writer: the replication thread; {@link #toJson()} from any thread, under the
 * object's lock). The pause of a checkpoint is the time the primary's guest is stopped: from pause to resume, which
 * includes sending the last dirty pages, the secondary's apply (it acknowledges once its guest RAM equals the
 * checkpoint) and, with checksums on, the primary's checksum. Names follow QEMU's {@code query-migrate} where they mean
 * the same (downtime ~ pause, transferred).
 */
public final class ReplicationStats {
    /** JSON schema name of {@link #toJson()}. */
    public static final String SCHEMA = "pagewire.replication-stats/1";

    private final long pageSize;
    private final Histogram pauseNs = new Histogram(3_600_000_000_000L, 3);
    private final Histogram applyNs = new Histogram(3_600_000_000_000L, 3);
    private long checkpoints;
    private long initialSyncNs;
    private long initialSyncPages;
    private long initialSyncPauseNs;
    private long backgroundPages;
    private long pausePages;
    private long maxPausePages;
    private long copiedPages;
    private long secondaryDirtyPages;
    private long lastPauseNs;
    private long lastEpoch;

    ReplicationStats(long pageSize) {
        this.pageSize = pageSize;
    }

    synchronized void initialSync(long ns, long pages) {
        initialSyncNs = ns;
        initialSyncPages = pages;
    }

    synchronized void background(long pages) {
        backgroundPages += pages;
    }

    synchronized void checkpoint(long epoch, long pauseNanos, long pagesAtPause, ReplicaMessages.Applied applied) {
        if (checkpoints == 0) {
            initialSyncPauseNs = pauseNanos;
        }
        checkpoints++;
        lastEpoch = epoch;
        lastPauseNs = pauseNanos;
        pauseNs.recordValue(Math.max(1, pauseNanos));
        applyNs.recordValue(Math.max(1, applied.applyNs()));
        pausePages += pagesAtPause;
        maxPausePages = Math.max(maxPausePages, pagesAtPause);
        copiedPages += applied.copiedPages();
        secondaryDirtyPages += applied.secondaryDirtyPages();
    }

    /** @return checkpoints completed (acknowledged by the secondary) */
    public synchronized long checkpoints() {
        return checkpoints;
    }

    /** @return the last acknowledged epoch, 0 before the first */
    public synchronized long lastEpoch() {
        return lastEpoch;
    }

    /** @return a copy of the pause histogram (ns) */
    public synchronized Histogram pauseNs() {
        return pauseNs.copy();
    }

    /** @return a copy of the secondary's apply (RAM-cache copy) histogram (ns) */
    public synchronized Histogram applyNs() {
        return applyNs.copy();
    }

    /** @return the pause of the first checkpoint, which ends the initial sync (ns) */
    public synchronized long initialSyncPauseNs() {
        return initialSyncPauseNs;
    }

    /** @return pages sent at pauses, all checkpoints together */
    public synchronized long pausePages() {
        return pausePages;
    }

    /** @return pages sent by background passes between checkpoints */
    public synchronized long backgroundPages() {
        return backgroundPages;
    }

    /** @return the statistics as one JSON object (schema {@link #SCHEMA}) */
    public synchronized ObjectNode toJson() {
        ObjectNode o = Json.object();
        o.put("schema", SCHEMA);
        o.put("checkpoints", checkpoints);
        o.put("last-epoch", lastEpoch);
        ObjectNode init = o.putObject("initial-sync");
        init.put("time-ms", Json.round(initialSyncNs / 1e6, 2));
        init.put("pages", initialSyncPages);
        init.put("pause-ms", Json.round(initialSyncPauseNs / 1e6, 3));
        putMs(o.putObject("pause-ms"), pauseNs);
        o.put("last-pause-ms", Json.round(lastPauseNs / 1e6, 3));
        ObjectNode p = o.putObject("pause-pages");
        p.put("total", pausePages);
        p.put("per-checkpoint", checkpoints == 0 ? 0 : Json.round((double) pausePages / checkpoints, 1));
        p.put("max", maxPausePages);
        p.put("bytes", pausePages * pageSize);
        ObjectNode b = o.putObject("background");
        b.put("pages", backgroundPages);
        b.put("bytes", backgroundPages * pageSize);
        b.put("per-checkpoint", checkpoints == 0 ? 0 : Json.round((double) backgroundPages / checkpoints, 1));
        ObjectNode s = o.putObject("secondary");
        putMs(s.putObject("cache-copy-ms"), applyNs);
        s.put("copied-pages", copiedPages);
        s.put("copied-bytes", copiedPages * pageSize);
        s.put("secondary-dirty-pages", secondaryDirtyPages);
        return o;
    }

    private static void putMs(ObjectNode o, Histogram h) {
        o.put("count", h.getTotalCount());
        o.put("p50", Json.round(h.getValueAtPercentile(50) / 1e6, 3));
        o.put("p99", Json.round(h.getValueAtPercentile(99) / 1e6, 3));
        o.put("max", Json.round(h.getMaxValue() / 1e6, 3));
    }
}
