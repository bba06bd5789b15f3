/**
 * The verbs port over DiSNi ({@link io.pagewire.transport.rdma.disni.DisniFabric}) and the probe
 * that tells, without loading any DiSNi class, whether it can run here
 * ({@link io.pagewire.transport.rdma.disni.DisniProbe}).
 *
 * <h2>Invariants</h2>
 * {@code DisniFabric} is the only class of pagewire that links against DiSNi; it is loaded by name,
 * only when the {@code disni} fabric is used and the probe found the jar, {@code libdisni},
 * rdma-core and a device. Without them {@code rdma://} fails at once naming what is missing.
 *
 * <h2>Threading</h2>
 * A listener has one thread dispatching connection-manager events (connect requests, disconnects
 * of accepted ids); each connected active endpoint has one thread watching for its disconnect.
 * Posting to a queue pair is serialised per queue pair; a completion queue is polled by one thread.
 */
package io.pagewire.transport.rdma.disni;
