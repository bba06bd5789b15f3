package io.pagewire.transport.rdma.verbs;

/**
 * The port to an RDMA fabric: the few connection-manager and verbs operations the transport
 * uses ({@code rdma_cm}: bind, listen, resolve, connect, accept, disconnect; verbs: protection
 * domains, memory registration, completion queues, reliable-connected queue pairs, post send,
 * post receive, poll). Implemented over DiSNi for real hardware and by an in-process simulated
 * fabric for machines without RDMA.
 *
 * <p>Semantics are those of RC queue pairs: work requests of one queue pair execute in order,
 * completions of one queue pair arrive in order, a SEND posted after RDMA WRITEs on the same
 * queue pair is delivered only after their data has been placed; an error moves the queue pair
 * to the error state and flushes everything outstanding on it.
 */
public interface RdmaFabric {

    /** @return a short name for messages, e.g. {@code disni} or {@code simulated} */
    String name();

    /**
     * Binds and listens ({@code rdma_bind_addr}, {@code rdma_listen}).
     *
     * @param host address to bind ({@code 0.0.0.0} for all)
     * @param port port, 0 for any free one
     * @return the listening endpoint
     */
    RdmaServer listen(String host, int port) throws VerbsException;

    /**
     * Resolves address and route to a listener ({@code rdma_resolve_addr}, {@code rdma_resolve_route}).
     *
     * @return an endpoint on the device that reaches the peer, not yet connected
     */
    RdmaEndpoint resolve(String host, int port, long timeoutNs) throws VerbsException;
}
