/**
 * An in-process simulated RDMA fabric implementing the verbs port
 * ({@link io.pagewire.transport.rdma.verbs}), for machines without RDMA: the transport's test kit
 * and benchmarks run over it. It is selected with {@code -Dpagewire.rdma.fabric=simulated}; both
 * ends of a connection must then be in the same JVM.
 *
 * <h2>Invariants</h2>
 * It really copies bytes, and only between live registrations: every scatter/gather entry is
 * checked against its lkey (protection domain, bounds), every RDMA WRITE/READ against its rkey
 * (the peer's protection domain, bounds, remote access flags), every SEND against the peer's
 * posted receive (present, long enough). Queue depths and completion-queue capacity are hard
 * limits. Work requests of a queue pair execute and complete in order; an error completes the
 * failed request, moves the queue pair to the error state and flushes the rest. Failure
 * injection ({@link io.pagewire.transport.rdma.sim.SimQueuePair}) adds completion errors, link
 * failures and silent partitions.
 *
 * <h2>Threading</h2>
 * Each queue pair has one engine thread (its "NIC") executing its send queue; it ends when the
 * queue pair is destroyed. All other state is guarded by per-object locks; the engine never holds
 * two queue-pair locks at once.
 */
package io.pagewire.transport.rdma.sim;
