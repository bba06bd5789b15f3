package io.pagewire.transport.rdma.verbs;

/** A listening connection-manager endpoint. */
public interface RdmaServer extends AutoCloseable {

    /** @return the bound host */
    String host();

    /** @return the bound port (the real one when 0 was asked) */
    int port();

    /**
     * Waits for the next connection request ({@code RDMA_CM_EVENT_CONNECT_REQUEST}).
     *
     * @return an endpoint to create a queue pair on and then accept or reject; null on timeout
     */
    RdmaEndpoint awaitRequest(long timeoutNs) throws VerbsException;

    /** Stops listening; wakes a thread in {@link #awaitRequest}. Idempotent. */
    @Override
    void close();
}
