package io.pagewire.transport.rdma.verbs;

import java.io.IOException;
import java.io.Serial;

/** A verbs or connection-manager call failed; the message names the call and the cause. */
public class VerbsException extends IOException {
    @Serial
    private static final long serialVersionUID = 1L;

    public VerbsException(String message) {
        super(message);
    }

    public VerbsException(String message, Throwable cause) {
        super(message, cause);
    }
}
