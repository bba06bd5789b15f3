package io.pagewire.transport.rdma.verbs;

/**
 * One connection-manager id with at most one queue pair: resolved (active side) or requested
 * (passive side), then connected or accepted, finally disconnected and closed.
 */
public interface RdmaEndpoint extends AutoCloseable {

    /** @return the device this endpoint is bound to */
    RdmaDevice device();

    /**
     * Creates the reliable-connected queue pair of this endpoint.
     *
     * @param pd protection domain: the memory registrations the queue pair may use
     * @param cq completion queue for both send and receive completions
     * @param config depths and name
     */
    QueuePair createQueuePair(ProtectionDomain pd, CompletionQueue cq, QpConfig config) throws VerbsException;

    /** Active side: connects without private data and waits for {@code RDMA_CM_EVENT_ESTABLISHED}. */
    default void connect(long timeoutNs) throws VerbsException {
        connect(timeoutNs, new byte[0]);
    }

    /**
     * Active side: connects and waits for {@code RDMA_CM_EVENT_ESTABLISHED}.
     *
     * @param privateData the connect request's private data ({@code rdma_conn_param.private_data}),
     *        at most {@link Verbs#MAX_CONNECT_PRIVATE_DATA} bytes; the listener reads it before it
     *        creates the queue pair of the request
     */
    void connect(long timeoutNs, byte[] privateData) throws VerbsException;

    /**
     * Passive side: the private data of the connect request, which may carry trailing zeros
     * (the connection manager may pad it to the 56 bytes a REQ carries); empty on the active side.
     */
    byte[] privateData();

    /** Passive side: accepts; receives should be posted before. */
    void accept() throws VerbsException;

    /** Passive side: refuses the request. */
    void reject();

    /**
     * Disconnects: the queue pairs on both sides go to the error state, their outstanding work
     * requests and posted receives complete with {@link Verbs#WC_WR_FLUSH_ERR}. Idempotent.
     */
    void disconnect();

    /** @return the peer's address, for messages */
    String peerAddress();

    /** Destroys the queue pair and the id. Idempotent; disconnects first if needed. */
    @Override
    void close();
}
