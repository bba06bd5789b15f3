package io.pagewire.agent.snapshot;

import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The counters of one snapshot, each commented; updated by the engine's threads, read by anyone (each value
 * is current; a set of reads is not a snapshot). Fault latency is kept in an HdrHistogram (ns).
 */
public final class SnapshotStats {
    /** Write faults served: pages copied because a vCPU wrote them before the background pass reached them. */
    final AtomicLong faultPages = new AtomicLong();
    /** Fault messages for pages already claimed (a second writer on the same page, or the background pass first). */
    final AtomicLong faultsAlreadySaved = new AtomicLong();
    /** Pages the background pass copied. */
    final AtomicLong backgroundPages = new AtomicLong();
    /** Pages never written because they were zero at the start (never populated, ballooned, or found zero). */
    final AtomicLong zeroPages = new AtomicLong();
    /** Pages written to the target (data). */
    final AtomicLong dataPages = new AtomicLong();
    /** Faults that waited for room in the copy pool (the pool was full). */
    final AtomicLong poolWaits = new AtomicLong();
    /** Largest number of pool pages in use at once. */
    final AtomicLong poolHighWater = new AtomicLong();
    /** Times the seed policy throttled the background pass. */
    final AtomicLong seedThrottles = new AtomicLong();
    /** Smallest background window the adaptive policy set. */
    final AtomicLong adaptiveMinWindow = new AtomicLong(Long.MAX_VALUE);
    /**
     * Write-fault latency, ns: from reading the fault message until the writer was released (its page copied
     * and unprotected, or with copy-before-write off, written to the target). Faults read in one batch are all
     * measured from the batch's read, so a fault queued behind others counts its wait.
     */
    final ConcurrentHistogram faultLatency = new ConcurrentHistogram(TimeUnit.SECONDS.toNanos(60), 3);
    volatile long startNs = -1;
    /** Pause at the start instant: guest paused, write-protected, resumed (ns). */
    volatile long setupNs = -1;
    volatile long endNs = -1;
    /** Phase ends: population noted (relative to start), background pass done, every copy written. */
    volatile long populationNs = -1;
    volatile long passEndNs = -1;
    volatile long drainEndNs = -1;
    volatile long releasedNs = -1;
    volatile String error;

    /** @return write faults served by copying */
    public long faultPages() {
        return faultPages.get();
    }

    /** @return fault messages for pages already saved */
    public long faultsAlreadySaved() {
        return faultsAlreadySaved.get();
    }

    /** @return pages the background pass copied */
    public long backgroundPages() {
        return backgroundPages.get();
    }

    /** @return zero pages never written */
    public long zeroPages() {
        return zeroPages.get();
    }

    /** @return pages written to the target */
    public long dataPages() {
        return dataPages.get();
    }

    /** @return faults that waited for room in the pool */
    public long poolWaits() {
        return poolWaits.get();
    }

    /** @return most pool pages in use at once */
    public long poolHighWater() {
        return poolHighWater.get();
    }

    /** @return times the seed policy throttled the background pass */
    public long seedThrottles() {
        return seedThrottles.get();
    }

    /** @return the smallest background window the adaptive policy set, or -1 */
    public long adaptiveMinWindow() {
        long w = adaptiveMinWindow.get();
        return w == Long.MAX_VALUE ? -1 : w;
    }

    /** @return a copy of the fault-latency histogram (ns) */
    public Histogram faultLatency() {
        return faultLatency.copy();
    }

    /** @return the pause at the start instant, ns (-1 before) */
    public long setupNs() {
        return setupNs;
    }

    /** @return total time from start to the completion marker, ns (-1 while running) */
    public long totalNs() {
        return endNs < 0 || startNs < 0 ? -1 : endNs - startNs;
    }

    /**
     * @return the phases, ms: population read in the pause (page tables of anonymous memory; a file's holes are read by
     *         the pass), protection (the rest of the pause), background pass, last copies written, finish (durable +
     *         marker; the end of the total), and after it the clean-up (userfaultfd unregistered)
     */
    public String phases() {
        return String.format(java.util.Locale.ROOT,
                "population %.1f ms, protect %.1f ms, pass %.1f ms, drain %.1f ms, finish %.1f ms; then unregister %.1f ms",
                populationNs / 1e6, (setupNs - populationNs) / 1e6, (passEndNs - startNs - setupNs) / 1e6, (drainEndNs - passEndNs) / 1e6,
                (endNs - drainEndNs) / 1e6, (releasedNs - endNs) / 1e6);
    }

    /** @return the error that ended the snapshot, or null */
    public String error() {
        return error;
    }

    /** @return one line: counts, times and fault-latency percentiles in us */
    public String summary() {
        Histogram h = faultLatency();
        return String.format(java.util.Locale.ROOT,
                "total-time %.1f ms, setup %.2f ms, data %d pages, zero %d, faults %d (already saved %d), background %d, pool waits %d, pool high-water %d pages;"
                        + " fault latency us: p50 %.1f p99 %.1f p99.9 %.1f max %.1f",
                totalNs() / 1e6, setupNs / 1e6, dataPages(), zeroPages(), faultPages(), faultsAlreadySaved(), backgroundPages(), poolWaits(),
                poolHighWater(), h.getValueAtPercentile(50) / 1e3, h.getValueAtPercentile(99) / 1e3, h.getValueAtPercentile(99.9) / 1e3,
                h.getMaxValue() / 1e3);
    }
}
