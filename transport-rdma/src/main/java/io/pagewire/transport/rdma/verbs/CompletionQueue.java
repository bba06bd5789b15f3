package io.pagewire.transport.rdma.verbs;

/**
 * A completion queue with its completion channel. One thread polls it at a time.
 */
public interface CompletionQueue extends AutoCloseable {

    /**
     * Polls ({@code ibv_poll_cq}) without blocking.
     *
     * @param into receives up to {@link WorkCompletions#capacity()} completions
     * @return how many were taken
     */
    int poll(WorkCompletions into) throws VerbsException;

    /** Arms the completion channel ({@code ibv_req_notify_cq}): the next completion raises one event. */
    void requestNotify() throws VerbsException;

    /**
     * Waits for an event on the completion channel ({@code ibv_get_cq_event}, acknowledged).
     *
     * @return true on an event, false on timeout or {@link #wakeup()}
     */
    boolean awaitEvent(long timeoutNs) throws VerbsException;

    /** Wakes a thread in {@link #awaitEvent} (used by close). */
    void wakeup();

    /** Destroys the queue. Idempotent. */
    @Override
    void close();
}
