package io.pagewire.ramtracker;

import java.io.Serial;

/**
 * A RAM tracker failure: a native call that failed, a kernel feature that is missing, or a bad
 * argument that could only be detected against the running system.
 *
 * <p>The message names what failed and with what (region, page, errno) and, where there is one,
 * what the user can do. {@link #errno()} is the C {@code errno} of the failed call, or 0 when
 * the failure did not come from a system call.
 */
public class RamTrackerException extends RuntimeException {
    @Serial
    private static final long serialVersionUID = 1L;

    private final int errno;

    /**
     * @param message what failed, with what, and what to do
     */
    public RamTrackerException(String message) {
        this(message, 0);
    }

    /**
     * @param message what failed, with what, and what to do
     * @param errno the {@code errno} of the failed call (0 if none)
     */
    public RamTrackerException(String message, int errno) {
        super(message);
        this.errno = errno;
    }

    /**
     * @param message what failed, with what, and what to do
     * @param cause the underlying failure
     */
    public RamTrackerException(String message, Throwable cause) {
        super(message, cause);
        this.errno = cause instanceof RamTrackerException r ? r.errno : 0;
    }

    /** @return the {@code errno} of the failed system call, or 0 if the failure was not a system call */
    public int errno() {
        return errno;
    }
}
