package io.pagewire.agent.replica;

import java.util.concurrent.TimeUnit;

/**
 * Settings of a {@link ReplicationPrimary}, fluent in the Aeron style; {@link #conclude()} validates and fails naming
 * the bad value.
 */
public final class ReplicationConfig {
    /** Which checkpoint design runs (docs/replication.md, "Designs"). */
    public enum Design {
        /**
         * The seed's problem, for comparison: nothing moves between checkpoints; at each checkpoint every page dirtied
         * since the last one is sent while the guest is paused, and the secondary copies its whole RAM cache (every
         * populated page) into its guest.
         */
        PAUSE_ALL,
        /**
         * Dirty pages flow in the background between checkpoints; the pause sends only what was dirtied since the last
         * background pass, and the secondary copies only the pages dirtied by the primary or by its own guest.
         */
        BACKGROUND
    }

    private long intervalNs = TimeUnit.SECONDS.toNanos(1);
    private long passIntervalNs = 0;
    private long rateLimitBytesPerSec = 0;
    private int maxInitialPasses = 5;
    private boolean checksums;
    private Design design = Design.BACKGROUND;
    private long ackTimeoutNs = TimeUnit.SECONDS.toNanos(60);

    /** @return time between checkpoints; 0 = only on demand ({@link ReplicationPrimary#requestCheckpoint()}) */
    public long intervalNs() {
        return intervalNs;
    }

    /** @param ns time between checkpoints, 0 = only on demand @return this */
    public ReplicationConfig intervalNs(long ns) {
        this.intervalNs = ns;
        return this;
    }

    /** @return time between background passes; 0 = a quarter of the interval (at least 5 ms), or 50 ms on demand only */
    public long passIntervalNs() {
        if (passIntervalNs > 0) {
            return passIntervalNs;
        }
        return intervalNs == 0 ? TimeUnit.MILLISECONDS.toNanos(50) : Math.max(TimeUnit.MILLISECONDS.toNanos(5), intervalNs / 4);
    }

    /** @param ns time between background passes, 0 = derived from the interval @return this */
    public ReplicationConfig passIntervalNs(long ns) {
        this.passIntervalNs = ns;
        return this;
    }

    /** @return cap on the background page rate in bytes per second, 0 = none (pages at a pause are never capped) */
    public long rateLimitBytesPerSec() {
        return rateLimitBytesPerSec;
    }

    /** @param bytesPerSec background rate cap, 0 = none @return this */
    public ReplicationConfig rateLimitBytesPerSec(long bytesPerSec) {
        this.rateLimitBytesPerSec = bytesPerSec;
        return this;
    }

    /** @return at most this many dirty passes of the initial sync after its bulk pass, before the first checkpoint */
    public int maxInitialPasses() {
        return maxInitialPasses;
    }

    /** @param passes dirty passes of the initial sync @return this */
    public ReplicationConfig maxInitialPasses(int passes) {
        this.maxInitialPasses = passes;
        return this;
    }

    /** @return whether the primary computes a CRC32C of its RAM at every checkpoint, while paused (lengthens the pause) */
    public boolean checksums() {
        return checksums;
    }

    /** @param on checksum every checkpoint @return this */
    public ReplicationConfig checksums(boolean on) {
        this.checksums = on;
        return this;
    }

    /** @return the design */
    public Design design() {
        return design;
    }

    /** @param d the design @return this */
    public ReplicationConfig design(Design d) {
        this.design = d;
        return this;
    }

    /** @return how long the paused primary waits for the secondary's acknowledgement of a checkpoint */
    public long ackTimeoutNs() {
        return ackTimeoutNs;
    }

    /** @param ns acknowledgement timeout @return this */
    public ReplicationConfig ackTimeoutNs(long ns) {
        this.ackTimeoutNs = ns;
        return this;
    }

    /** @return this, validated */
    public ReplicationConfig conclude() {
        if (intervalNs < 0 || intervalNs > TimeUnit.HOURS.toNanos(1)) {
            throw new IllegalArgumentException("checkpoint interval " + intervalNs / 1_000_000 + " ms outside 0..3600000 ms");
        }
        if (passIntervalNs < 0) {
            throw new IllegalArgumentException("background pass interval " + passIntervalNs + " ns is negative");
        }
        if (rateLimitBytesPerSec < 0) {
            throw new IllegalArgumentException("background rate cap " + rateLimitBytesPerSec + " bytes/s is negative");
        }
        if (maxInitialPasses < 0 || maxInitialPasses > 100) {
            throw new IllegalArgumentException("initial dirty passes " + maxInitialPasses + " outside 0..100");
        }
        if (ackTimeoutNs <= 0) {
            throw new IllegalArgumentException("acknowledgement timeout " + ackTimeoutNs + " ns is not positive");
        }
        if (design == null) {
            throw new IllegalArgumentException("no design");
        }
        return this;
    }
}
