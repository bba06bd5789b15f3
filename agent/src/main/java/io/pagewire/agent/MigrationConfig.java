package io.pagewire.agent;

import java.util.concurrent.TimeUnit;

/**
 * Settings of a source-side migration, Aeron-style: fluent accessors, units in the names, and
 * {@link #conclude()} to validate. Defaults follow QEMU where QEMU has the setting.
 */
public final class MigrationConfig {

    /** What to do when precopy does not converge within the round or time budget. */
    public enum Policy {
        /** Switch over anyway: the downtime will exceed the limit. */
        FORCE,
        /** Abort the migration; the guest keeps running on the source. */
        CANCEL,
        /** Auto-converge: throttle the vCPUs, stepping up each round (QEMU's cpu-throttle), until it converges. */
        THROTTLE
    }

    private long downtimeLimitNs = TimeUnit.MILLISECONDS.toNanos(300);
    private int maxRounds = 30;
    private long maxTimeNs = 0;
    private Policy policy = Policy.THROTTLE;
    private int throttleInitialPercent = 20;
    private int throttleIncrementPercent = 10;
    private int throttleMaxPercent = 99;
    private long maxBandwidthBytesPerSec = 0;
    private int scanThreads = Math.min(4, Math.max(1, Runtime.getRuntime().availableProcessors()));
    private boolean verify = true;
    private long verifyStallTimeoutNs = TimeUnit.SECONDS.toNanos(60);
    private long completionTimeoutNs = TimeUnit.SECONDS.toNanos(60);
    private boolean postcopy;
    private int postcopyAfterRounds = -1;
    private long postcopyRecoveryTimeoutNs = java.util.concurrent.TimeUnit.SECONDS.toNanos(60);

    /** @return the longest acceptable downtime (default 300 ms, as QEMU's downtime-limit) */
    public long downtimeLimitNs() {
        return downtimeLimitNs;
    }

    public MigrationConfig downtimeLimitNs(long ns) {
        downtimeLimitNs = ns;
        return this;
    }

    /** @return rounds after which the policy applies if precopy has not converged (default 30) */
    public int maxRounds() {
        return maxRounds;
    }

    public MigrationConfig maxRounds(int rounds) {
        maxRounds = rounds;
        return this;
    }

    /** @return time after which the policy applies, 0 = no time budget (default) */
    public long maxTimeNs() {
        return maxTimeNs;
    }

    public MigrationConfig maxTimeNs(long ns) {
        maxTimeNs = ns;
        return this;
    }

    /** @return what to do when precopy does not converge (default throttle) */
    public Policy policy() {
        return policy;
    }

    public MigrationConfig policy(Policy p) {
        policy = p;
        return this;
    }

    /** @return first throttle step (default 20 %, QEMU's cpu-throttle-initial) */
    public int throttleInitialPercent() {
        return throttleInitialPercent;
    }

    public MigrationConfig throttleInitialPercent(int p) {
        throttleInitialPercent = p;
        return this;
    }

    /** @return throttle increase per round (default 10 %, QEMU's cpu-throttle-increment) */
    public int throttleIncrementPercent() {
        return throttleIncrementPercent;
    }

    public MigrationConfig throttleIncrementPercent(int p) {
        throttleIncrementPercent = p;
        return this;
    }

    /** @return highest throttle (default 99 %, QEMU's max-cpu-throttle); beyond it the engine forces the switchover */
    public int throttleMaxPercent() {
        return throttleMaxPercent;
    }

    public MigrationConfig throttleMaxPercent(int p) {
        throttleMaxPercent = p;
        return this;
    }

    /** @return bandwidth cap for page data, 0 = none (QEMU's max-bandwidth) */
    public long maxBandwidthBytesPerSec() {
        return maxBandwidthBytesPerSec;
    }

    public MigrationConfig maxBandwidthBytesPerSec(long b) {
        maxBandwidthBytesPerSec = b;
        return this;
    }

    /** @return threads that classify pages (zero scan) in parallel (default: cores, at most 4) */
    public int scanThreads() {
        return scanThreads;
    }

    public MigrationConfig scanThreads(int n) {
        scanThreads = n;
        return this;
    }

    /** @return whether to compare source and destination RAM after completion (CRC32C per region) */
    public boolean verify() {
        return verify;
    }

    public MigrationConfig verify(boolean v) {
        verify = v;
        return this;
    }

    /**
     * @return how long the source waits for the verification verdict while the destination reports
     *         no progress: it waits as long as the destination's checksum advances, whatever the RAM
     *         size (default 60 s without progress)
     */
    public long verifyStallTimeoutNs() {
        return verifyStallTimeoutNs;
    }

    public MigrationConfig verifyStallTimeoutNs(long ns) {
        verifyStallTimeoutNs = ns;
        return this;
    }

    /** @return how long to wait for the destination's completion acknowledgement */
    public long completionTimeoutNs() {
        return completionTimeoutNs;
    }

    public MigrationConfig completionTimeoutNs(long ns) {
        completionTimeoutNs = ns;
        return this;
    }

    /**
     * @return whether postcopy is allowed: when precopy does not converge within its budget the
     *         engine switches to postcopy instead of applying the policy (default false)
     */
    public boolean postcopy() {
        return postcopy;
    }

    public MigrationConfig postcopy(boolean p) {
        postcopy = p;
        return this;
    }

    /**
     * @return switch to postcopy after this many precopy rounds (0: at once, before the bulk round;
     *         -1: only when precopy does not converge or on command). Needs {@link #postcopy()}.
     */
    public int postcopyAfterRounds() {
        return postcopyAfterRounds;
    }

    public MigrationConfig postcopyAfterRounds(int rounds) {
        postcopyAfterRounds = rounds;
        return this;
    }

    /**
     * @return how long a postcopy whose connection broke stays paused waiting to resume over a new
     *         connection (QEMU's postcopy-paused): the source retries on its own and takes
     *         {@link SourceMigration#resume} meanwhile, the destination keeps listening; 0 = no
     *         recovery, a lost connection fails the migration (default 60 s)
     */
    public long postcopyRecoveryTimeoutNs() {
        return postcopyRecoveryTimeoutNs;
    }

    public MigrationConfig postcopyRecoveryTimeoutNs(long ns) {
        postcopyRecoveryTimeoutNs = ns;
        return this;
    }

    /**
     * Validates.
     *
     * @return this
     * @throws IllegalArgumentException naming the bad value
     */
    public MigrationConfig conclude() {
        if (downtimeLimitNs <= 0) {
            throw new IllegalArgumentException("downtime limit " + downtimeLimitNs + " ns must be positive");
        }
        if (maxRounds < 1) {
            throw new IllegalArgumentException("max rounds " + maxRounds + " must be at least 1");
        }
        if (maxTimeNs < 0) {
            throw new IllegalArgumentException("max time " + maxTimeNs + " ns is negative");
        }
        if (throttleInitialPercent < 1 || throttleInitialPercent > 99 || throttleIncrementPercent < 1 || throttleIncrementPercent > 99
                || throttleMaxPercent < throttleInitialPercent || throttleMaxPercent > 99) {
            throw new IllegalArgumentException("throttle initial " + throttleInitialPercent + "%, increment " + throttleIncrementPercent
                    + "%, max " + throttleMaxPercent + "%: each must be 1..99 and max >= initial");
        }
        if (maxBandwidthBytesPerSec < 0) {
            throw new IllegalArgumentException("max bandwidth " + maxBandwidthBytesPerSec + " is negative");
        }
        if (postcopyAfterRounds < -1) {
            throw new IllegalArgumentException("postcopy after rounds " + postcopyAfterRounds + " must be -1 (only when needed), 0 (at once) or more");
        }
        if (postcopyAfterRounds >= 0 && !postcopy) {
            throw new IllegalArgumentException("postcopy after rounds " + postcopyAfterRounds + " needs postcopy(true)");
        }
        if (postcopyRecoveryTimeoutNs < 0) {
            throw new IllegalArgumentException("postcopy recovery timeout " + postcopyRecoveryTimeoutNs + " ns is negative");
        }
        if (verifyStallTimeoutNs <= 0) {
            throw new IllegalArgumentException("verify stall timeout " + verifyStallTimeoutNs + " ns must be positive");
        }
        if (scanThreads < 1 || scanThreads > 64) {
            throw new IllegalArgumentException("scan threads " + scanThreads + " outside 1..64");
        }
        return this;
    }
}
