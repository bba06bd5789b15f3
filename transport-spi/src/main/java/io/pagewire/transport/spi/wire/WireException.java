package io.pagewire.transport.spi.wire;

import io.pagewire.transport.spi.TransportException;

import java.io.Serial;

/** A frame or handshake that breaks the wire format: a {@link TransportException} of kind {@code PROTOCOL}. */
public final class WireException extends TransportException {
    @Serial
    private static final long serialVersionUID = 1L;

    public WireException(String message) {
        super(Kind.PROTOCOL, message);
    }
}
