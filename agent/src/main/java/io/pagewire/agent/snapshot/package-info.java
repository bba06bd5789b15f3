/**
 * Live snapshots of guest RAM (seed 003): the {@link io.pagewire.agent.snapshot.SnapshotEngine} write-protects RAM
 * with userfaultfd in synchronous mode, copies a page before the first write to it (copy-before-write) into a
 * bounded pool, and saves everything else in a background pass; {@link io.pagewire.agent.snapshot.SnapshotSink}s
 * write the pages to a fixed-offset file ({@link io.pagewire.agent.snapshot.SnapshotFileWriter}, format in
 * {@code docs/snapshot-format.md}) or over a transport ({@link io.pagewire.agent.snapshot.TransportSnapshotSink},
 * received by {@link io.pagewire.agent.snapshot.SnapshotReceiver}).
 *
 * <p>Invariants: every page is saved exactly once, by whichever of the fault thread and the background pass
 * claims it first (an atomic bit per page), with its content at the start instant; a page's protection is lifted
 * only after that content is copied (or, without copy-before-write, written). Memory held by copies is bounded by
 * the pool; a full pool makes the faulting writer wait. Threading: one fault thread, one background thread, N
 * writer threads; sinks are called from the writers concurrently.
 */
package io.pagewire.agent.snapshot;
