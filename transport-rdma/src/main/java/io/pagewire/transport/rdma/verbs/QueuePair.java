package io.pagewire.transport.rdma.verbs;

/** A reliable-connected queue pair ({@code ibv_qp}, type RC). */
public interface QueuePair {

    /**
     * Posts the batch's work requests as one linked list ({@code ibv_post_send}): one call, however many requests.
     *
     * @throws VerbsException when the send queue has no room for all of them, or the queue pair is in the error state
     */
    void postSend(SendBatch batch) throws VerbsException;

    /**
     * Posts one receive buffer ({@code ibv_post_recv}).
     *
     * @param wrId returned in the completion
     * @param address buffer address
     * @param length buffer length
     * @param lkey local key of a registration with {@link Verbs#ACCESS_LOCAL_WRITE} covering the buffer
     */
    void postRecv(long wrId, long address, int length, int lkey) throws VerbsException;

    /**
     * @return why the queue pair left the ready state when the cause was not a completion of
     *         this side's own (a peer's access violation, a disconnect), or null when unknown
     */
    String asyncError();
}
