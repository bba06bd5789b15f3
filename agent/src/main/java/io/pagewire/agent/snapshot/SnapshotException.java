package io.pagewire.agent.snapshot;

/** A snapshot failed or a snapshot file is unusable; the message names what and where. */
public final class SnapshotException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** @param message what failed */
    public SnapshotException(String message) {
        super(message);
    }

    /**
     * @param message what failed
     * @param cause the underlying error
     */
    public SnapshotException(String message, Throwable cause) {
        super(message, cause);
    }
}
