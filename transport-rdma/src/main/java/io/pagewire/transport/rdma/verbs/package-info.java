/**
 * The verbs port: the small set of RDMA connection-manager and verbs operations the transport
 * uses, as interfaces ({@link io.pagewire.transport.rdma.verbs.RdmaFabric} and friends) plus two
 * reusable flyweights ({@link io.pagewire.transport.rdma.verbs.SendBatch},
 * {@link io.pagewire.transport.rdma.verbs.WorkCompletions}) so the data path allocates nothing.
 *
 * <h2>Invariants</h2>
 * Reliable-connected semantics: in-order execution and completion per queue pair; a SEND after
 * RDMA WRITEs on the same queue pair is delivered only after their data is placed; any error
 * moves the queue pair to the error state and flushes all outstanding work with
 * {@link io.pagewire.transport.rdma.verbs.Verbs#WC_WR_FLUSH_ERR}; a peer's RDMA access is checked
 * against the registration named by its rkey (protection domain, bounds, access flags).
 * Constants equal libibverbs' values.
 *
 * <h2>Threading</h2>
 * A queue pair may be posted to from several threads if the caller serialises each post; one
 * thread polls a completion queue at a time. Memory registration and connection management may
 * be called from any thread.
 */
package io.pagewire.transport.rdma.verbs;
