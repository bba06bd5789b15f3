package io.pagewire.agent.snapshot;

import java.util.concurrent.TimeUnit;

/**
 * Snapshot settings with fluent accessors (Aeron's Context style); {@link #conclude()} validates them and
 * names a bad value and its bound.
 */
public final class SnapshotConfig {
    /** Largest copy pool: 4 GiB. */
    public static final long MAX_POOL_BYTES = 4L << 30;

    private FaultLatencyPolicy policy = FaultLatencyPolicy.ADAPTIVE;
    private long poolBytes = 32L << 20;
    private int chunkPages = 16;
    private int backgroundBuffers = 16;
    private int writerThreads = 2;
    private boolean copyBeforeWrite = true;
    private long seedThresholdNs = TimeUnit.MILLISECONDS.toNanos(5);
    private int seedPages = 200;
    private long targetP99Ns = TimeUnit.MICROSECONDS.toNanos(100);

    /** @return the fault-latency policy (default adaptive) */
    public FaultLatencyPolicy policy() {
        return policy;
    }

    /** @param p the fault-latency policy */
    public SnapshotConfig policy(FaultLatencyPolicy p) {
        this.policy = p;
        return this;
    }

    /** @return bytes of the pool that holds faulted copies until written (default 32 MiB) */
    public long poolBytes() {
        return poolBytes;
    }

    /** @param bytes bytes of the copy pool */
    public SnapshotConfig poolBytes(long bytes) {
        this.poolBytes = bytes;
        return this;
    }

    /** @return pages the background pass copies per chunk (default 16, at most 64) */
    public int chunkPages() {
        return chunkPages;
    }

    /** @param pages pages per background chunk */
    public SnapshotConfig chunkPages(int pages) {
        this.chunkPages = pages;
        return this;
    }

    /** @return background chunk buffers (default 16): the background pass's share of memory */
    public int backgroundBuffers() {
        return backgroundBuffers;
    }

    /** @param n background chunk buffers */
    public SnapshotConfig backgroundBuffers(int n) {
        this.backgroundBuffers = n;
        return this;
    }

    /** @return writer threads (default 2) */
    public int writerThreads() {
        return writerThreads;
    }

    /** @param n writer threads */
    public SnapshotConfig writerThreads(int n) {
        this.writerThreads = n;
        return this;
    }

    /**
     * @return true (default): a faulting writer waits for a memory copy only; false: it waits until its page
     *         is written to the target, as in QEMU's patch (kept to measure what copy-before-write buys)
     */
    public boolean copyBeforeWrite() {
        return copyBeforeWrite;
    }

    /** @param on copy-before-write */
    public SnapshotConfig copyBeforeWrite(boolean on) {
        this.copyBeforeWrite = on;
        return this;
    }

    /** @return the seed policy's fault-latency threshold T (default 5 ms) */
    public long seedThresholdNs() {
        return seedThresholdNs;
    }

    /** @param ns the seed policy's threshold */
    public SnapshotConfig seedThresholdNs(long ns) {
        this.seedThresholdNs = ns;
        return this;
    }

    /** @return the seed policy's N: faulted pages served only, after a slow fault (default 200) */
    public int seedPages() {
        return seedPages;
    }

    /** @param n the seed policy's N */
    public SnapshotConfig seedPages(int n) {
        this.seedPages = n;
        return this;
    }

    /** @return the adaptive policy's fault-latency p99 target (default 100 us) */
    public long targetP99Ns() {
        return targetP99Ns;
    }

    /** @param ns the adaptive policy's target */
    public SnapshotConfig targetP99Ns(long ns) {
        this.targetP99Ns = ns;
        return this;
    }

    /**
     * Validates.
     *
     * @param pageSize the largest region page size
     * @return this
     */
    public SnapshotConfig conclude(long pageSize) {
        if (policy == null) {
            throw new IllegalArgumentException("no fault-latency policy");
        }
        if (poolBytes < pageSize || poolBytes > MAX_POOL_BYTES) {
            throw new IllegalArgumentException("copy pool of " + poolBytes + " bytes outside [" + pageSize + " (one page), " + MAX_POOL_BYTES + "]");
        }
        if (chunkPages < 1 || chunkPages > 64) {
            throw new IllegalArgumentException("background chunk of " + chunkPages + " pages outside 1..64");
        }
        if (backgroundBuffers < 1 || backgroundBuffers > 1024) {
            throw new IllegalArgumentException("background buffers " + backgroundBuffers + " outside 1..1024");
        }
        if (writerThreads < 1 || writerThreads > 64) {
            throw new IllegalArgumentException("writer threads " + writerThreads + " outside 1..64");
        }
        if (seedThresholdNs < 0 || seedPages < 0 || targetP99Ns <= 0) {
            throw new IllegalArgumentException("seed threshold " + seedThresholdNs + " ns, seed pages " + seedPages + " and target p99 "
                    + targetP99Ns + " ns must not be negative (the target must be positive)");
        }
        return this;
    }

    @Override
    public String toString() {
        return "policy " + policy.cliName() + ", pool " + (poolBytes >> 20) + " MiB, " + writerThreads + " writer(s), chunk " + chunkPages
                + " pages x " + backgroundBuffers + (copyBeforeWrite ? "" : ", no copy-before-write");
    }
}
