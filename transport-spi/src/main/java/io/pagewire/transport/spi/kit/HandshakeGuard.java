package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.wire.Hello;

/**
 * The destination's say on who may migrate in, asked by every listener of the kit at the same two
 * points: a HELLO that passed every format and layout check, before HELLO_ACK; and each JOIN of an
 * admitted session. Authentication runs before it (the kit's {@link AuthExchange}, from the URI's
 * credentials), so a guard sees only sources that proved themselves; it is left for further policy.
 * {@link #OPEN} admits everyone.
 */
public interface HandshakeGuard {
    /** Admits every source: no authentication configured. */
    HandshakeGuard OPEN = new HandshakeGuard() {
        @Override
        public String admitHello(Hello hello, String peer) {
            return null;
        }

        @Override
        public String admitJoin(Hello session, int stream, String peer) {
            return null;
        }
    };

    /**
     * @param hello the source's HELLO, already checked against the layout and limits
     * @param peer the source, for messages
     * @return null to admit, else why not (sent to the source, then it is closed)
     */
    String admitHello(Hello hello, String peer);

    /**
     * @param session the HELLO of the session the JOIN names
     * @param stream the background stream it joins
     * @param peer the joining connection's peer
     * @return null to admit, else why not
     */
    String admitJoin(Hello session, int stream, String peer);
}
