package io.pagewire.transport.spi;

import java.io.Serial;

/**
 * A transport failure. Unchecked, as in Aeron: back pressure is a return value
 * ({@link Lane#BACK_PRESSURED}), an exception always means something failed.
 *
 * <p>The message names what failed and with what (URI, region, page, errno) and, where there
 * is one, what the user can do. {@link #kind()} lets callers branch without parsing messages.
 */
public class TransportException extends RuntimeException {
    @Serial
    private static final long serialVersionUID = 1L;

    /** What kind of failure this is. */
    public enum Kind {
        /** A malformed URI, an unknown scheme or option, or a bad option value. */
        INVALID_URI,
        /** Bad configuration passed in code (a context or layout value). */
        INVALID_CONFIG,
        /** The transport cannot run here (missing native library, device or kernel feature). */
        UNAVAILABLE,
        /** Could not connect, bind or accept. */
        CONNECT_FAILED,
        /** The handshake failed: wrong magic, version, layout or parameters. */
        HANDSHAKE,
        /** The peer sent something invalid: bad CRC, length, region, page, frame type. */
        PROTOCOL,
        /** The connection broke or the peer went away before the transfer completed. */
        CONNECTION_LOST,
        /** The peer reported an error and closed. */
        PEER_ERROR,
        /** No sign of life from the peer within the peer timeout. */
        TIMEOUT,
        /** A local message handler or page placer threw; the connection was failed because of it. */
        HANDLER_FAILED,
        /** The connection was closed locally. */
        CLOSED
    }

    private final Kind kind;

    public TransportException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public TransportException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    /** @return the kind of failure */
    public Kind kind() {
        return kind;
    }

    @Override
    public String toString() {
        return "TransportException[" + kind + "]: " + getMessage();
    }
}
