package io.pagewire.linux;

import java.io.IOException;
import java.io.Serial;

/** A system call failed; carries the errno, named in the message with what was being done. */
public final class ErrnoException extends IOException {
    @Serial
    private static final long serialVersionUID = 1L;
    private final int errno;

    ErrnoException(String call, int errno, String what) {
        super(call + " " + what + ": " + Libc.describe(errno));
        this.errno = errno;
    }

    /** @return the errno value */
    public int errno() {
        return errno;
    }

    /** @return true for the errno of a timed-out blocking call (SO_RCVTIMEO / SO_SNDTIMEO) */
    public boolean isTimeout() {
        return errno == Libc.EAGAIN || errno == Libc.EINPROGRESS;
    }
}
