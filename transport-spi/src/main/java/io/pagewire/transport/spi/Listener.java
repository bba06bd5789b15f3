package io.pagewire.transport.spi;

import java.time.Duration;

/**
 * A destination endpoint that accepts source connections. Handshakes run in the background;
 * a source whose handshake fails (version, layout, garbage) gets an error and is closed, and the
 * listener goes on listening.
 */
public interface Listener extends AutoCloseable {

    /** @return the URI this listener can be reached at, with the actual port when 0 was asked */
    String uri();

    /**
     * Waits for the next source whose handshake has succeeded.
     *
     * @param handler receives that connection's messages from now on
     * @param timeout how long to wait
     * @return the connection
     * @throws TransportException {@code TIMEOUT} when none arrives in time, {@code CLOSED} when closed
     */
    Connection accept(MessageHandler handler, Duration timeout);

    /** Stops listening; connections already accepted stay open. Idempotent. */
    @Override
    void close();
}
