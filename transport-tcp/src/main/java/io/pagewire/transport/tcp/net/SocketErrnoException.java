package io.pagewire.transport.tcp.net;

import java.io.IOException;
import java.io.Serial;

/** A socket call failed; carries the errno. */
public final class SocketErrnoException extends IOException {
    @Serial
    private static final long serialVersionUID = 1L;
    private final int errno;

    SocketErrnoException(String call, int errno, String what) {
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
