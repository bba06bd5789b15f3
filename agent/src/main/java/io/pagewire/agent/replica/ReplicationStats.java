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
    /** Where the primary's pause goes, one histogram per stage (ns), in the order of {@link #STAGES}. */
    private final Histogram[] stageNs = new Histogram[STAGES.length];
    /** The secondary's part of the acknowledgement wait: marker arrival to complete, complete to replica-applied. */
    private final Histogram secondaryWaitNs = new Histogram(3_600_000_000_000L, 3);
    private final Histogram secondarySpanNs = new Histogram(3_600_000_000_000L, 3);
    private final Histogram fillNs = new Histogram(3_600_000_000_000L, 3);
    private long lazyPages;
    private long fillFaultPages;
    private long fillerPages;
    private long fillWaitNs;
    private long maxFillWaitNs;

    /**
     * The stages of the primary's pause: stopping the guest; collecting the dirty log; sending the pages dirtied since
     * the last pass and ROUND_END; the urgent marker; the checksum (tests only); waiting for {@code replica-applied}
     * (the secondary's completion and apply, and the network both ways); resuming the guest.
     */
    public static final String[] STAGES = {"stop-guest", "collect", "send", "marker", "checksum", "ack-wait", "resume"};
    private long checkpoints;
    private long initialSyncNs;
    private long initialSyncPages;
    private long initialSyncPauseNs;
    private long[] initialSyncStages;
    private ReplicaMessages.Applied initialSyncApplied;
    private long backgroundPages;
    private long pausePages;
    private long maxPausePages;
    private long copiedPages;
    private long secondaryDirtyPages;
    private long lastPauseNs;
    private long lastEpoch;

    ReplicationStats(long pageSize) {
        this.pageSize = pageSize;
        for (int i = 0; i < stageNs.length; i++) {
            stageNs[i] = new Histogram(3_600_000_000_000L, 3);
        }
    }

    synchronized void initialSync(long ns, long pages) {
        initialSyncNs = ns;
        initialSyncPages = pages;
    }

    synchronized void background(long pages) {
        backgroundPages += pages;
    }

    synchronized void fillWait(long ns) {
        fillWaitNs += ns;
        maxFillWaitNs = Math.max(maxFillWaitNs, ns);
    }

    synchronized void filled(ReplicaMessages.Filled f) {
        fillNs.recordValue(Math.max(1, f.fillNs()));
        fillFaultPages += f.faultPages();
        fillerPages += f.fillerPages();
    }

    synchronized void checkpoint(long epoch, long pauseNanos, long pagesAtPause, ReplicaMessages.Applied applied, long[] stages) {
        for (int i = 0; i < STAGES.length; i++) {
            stageNs[i].recordValue(Math.max(1, stages[i]));
        }
        secondaryWaitNs.recordValue(Math.max(1, applied.waitNs()));
        secondarySpanNs.recordValue(Math.max(1, applied.spanNs()));
        lazyPages += applied.lazyPages();
        if (checkpoints == 0) {
            initialSyncPauseNs = pauseNanos;
            initialSyncStages = stages.clone();
            initialSyncApplied = applied;
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

    /** @return a copy of stage {@code i}'s histogram ({@link #STAGES}) (ns) */
    public synchronized Histogram stageNs(int i) {
        return stageNs[i].copy();
    }

    /** @return a copy of the lazy fill-time histogram (ns, from the secondary's resume to its last page filled) */
    public synchronized Histogram fillNs() {
        return fillNs.copy();
    }

    /** @return pages filled lazily on the secondary's guest's access / by its filler */
    public synchronized long[] fillPages() {
        return new long[] {fillFaultPages, fillerPages};
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
        if (initialSyncStages != null) {
            ObjectNode st = init.putObject("pause-stages-ms");
            for (int i = 0; i < STAGES.length; i++) {
                st.put(STAGES[i], Json.round(initialSyncStages[i] / 1e6, 3));
            }
            st.put("secondary-complete-wait", Json.round(initialSyncApplied.waitNs() / 1e6, 3));
            st.put("secondary-apply-span", Json.round(initialSyncApplied.spanNs() / 1e6, 3));
            st.put("secondary-apply", Json.round(initialSyncApplied.applyNs() / 1e6, 3));
            init.put("secondary-copied-pages", initialSyncApplied.copiedPages());
            init.put("secondary-lazy-pages", initialSyncApplied.lazyPages());
            init.put("secondary-dirty-pages", initialSyncApplied.secondaryDirtyPages());
        }
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
        putMs(s.putObject("complete-wait-ms"), secondaryWaitNs);
        putMs(s.putObject("apply-span-ms"), secondarySpanNs);
        ObjectNode lazy = s.putObject("lazy-fill");
        lazy.put("pages", lazyPages);
        lazy.put("fault-pages", fillFaultPages);
        lazy.put("filler-pages", fillerPages);
        putMs(lazy.putObject("fill-ms"), fillNs);
        lazy.put("primary-wait-ms", Json.round(fillWaitNs / 1e6, 3));
        lazy.put("primary-wait-max-ms", Json.round(maxFillWaitNs / 1e6, 3));
        ObjectNode st = o.putObject("pause-stages-ms");
        for (int i = 0; i < STAGES.length; i++) {
            putMs(st.putObject(STAGES[i]), stageNs[i]);
        }
        return o;
    }

    private static void putMs(ObjectNode o, Histogram h) {
        o.put("count", h.getTotalCount());
        o.put("p50", Json.round(h.getValueAtPercentile(50) / 1e6, 3));
        o.put("p99", Json.round(h.getValueAtPercentile(99) / 1e6, 3));
        o.put("max", Json.round(h.getMaxValue() / 1e6, 3));
    }
}
