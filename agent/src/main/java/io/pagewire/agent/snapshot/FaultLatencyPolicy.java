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
     * {@link #URGENT} plus a background window adapted to the fault latency: the background pass keeps at
     * most W chunks queued or being written; W halves when the recent p99 of fault latency exceeds
     * {@link SnapshotConfig#targetP99Ns()} or the copy pool is more than half full, and grows by one chunk
     * while the pool is less than a quarter full (AIMD, as TCP's congestion window).
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
