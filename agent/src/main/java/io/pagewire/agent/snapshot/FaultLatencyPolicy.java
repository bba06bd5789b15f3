package io.pagewire.agent.snapshot;

import java.util.Locale;

/**
 * How the writers share the storage between faulted copies (urgent) and the background pass, to keep
 * the write-fault latency of a vCPU bounded when the storage stalls.
 */
public enum FaultLatencyPolicy {
    /** One FIFO queue for both, no priority: the seed's situation (one stream). */
    NONE,
    /**
     * The seed's rule on one FIFO queue: after a fault slower than {@link SnapshotConfig#seedThresholdNs()}
     * (5 ms), the background pass adds nothing while faulted pages wait, for the next
     * {@link SnapshotConfig#seedPages()} (200) faulted pages.
     */
    SEED,
    /** Faulted copies in their own queue, always taken by the writers ahead of background pages. */
    URGENT,
    /**
     * Priority by need, and a background window adapted to the fault latency. With copy-before-write a vCPU waits
     * for the storage only when the copy pool is full; so while the pool is at most half full the writers take
     * background chunks first (one write saves up to {@link SnapshotConfig#chunkPages()} pages, and a saved page can
     * no longer fault), and faulted copies first once it is fuller. The background pass keeps at most W chunks
     * queued or being written; every millisecond W halves when the p99 of that interval's fault latency exceeds
     * {@link SnapshotConfig#targetP99Ns()} or the pool is more than three quarters full, and grows by one chunk
     * while the pool is less than half full (AIMD, as TCP's congestion window), but never below half the writer
     * threads: the pass keeps that share of the storage, so the snapshot ends even when the storage cannot absorb
     * the faults (on storage that charges per write, strict priority to single faulted pages starves the pass,
     * which makes more pages fault).
     */
    ADAPTIVE;

    /** @return the policy named (none, seed, urgent, adaptive) */
    public static FaultLatencyPolicy parse(String name) {
        try {
            return valueOf(name.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("fault-latency policy '" + name + "' is not one of none, seed, urgent, adaptive");
        }
    }

    /** @return whether faulted copies are written ahead of queued background pages */
    public boolean prioritised() {
        return this == URGENT || this == ADAPTIVE;
    }

    /** @return the lower-case name */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }
}
