package io.pagewire.agent.replica;

/** Replication failed: the connection broke, the peer sent something wrong, or an acknowledgement did not come. */
public final class ReplicationException extends RuntimeException {
    /** @param message what failed, with what */
    public ReplicationException(String message) {
        super(message);
    }

    /** @param message what failed, with what @param cause the underlying failure */
    public ReplicationException(String message, Throwable cause) {
        super(message, cause);
    }
}
