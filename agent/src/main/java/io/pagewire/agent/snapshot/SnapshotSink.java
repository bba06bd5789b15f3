package io.pagewire.agent.snapshot;

import java.lang.foreign.MemorySegment;

/**
 * Where a snapshot's pages go: a fixed-offset file ({@link SnapshotFileWriter}) or a transport
 * ({@link TransportSnapshotSink}). Pages arrive in any order, from several writer threads at once, each page
 * exactly once; a page never given is zero (never populated, ballooned, or found zero).
 */
public interface SnapshotSink extends AutoCloseable {
    /**
     * Writes pages (not zero). Blocking here is the back pressure that slows the snapshot.
     *
     * @param region region index
     * @param firstPage first page
     * @param count pages
     * @param data {@code count * pageSize} bytes, valid only during the call
     * @param urgent true for a faulted copy (a vCPU may be waiting for room in the pool)
     */
    void pages(int region, long firstPage, int count, MemorySegment data, boolean urgent);

    /**
     * Everything has been given: make it durable and mark the snapshot complete.
     *
     * @param summary what was saved
     */
    void finish(SnapshotSummary summary);

    /** Releases the target; after a failure, the target is left recognisably incomplete. Idempotent. */
    @Override
    void close();

    /** What a snapshot saved, handed to {@link #finish}. */
    record SnapshotSummary(long dataPages, long zeroPages, long startEpochNs) {
    }
}
