package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.RegionDescriptor;

import java.io.IOException;
import java.time.Duration;
import java.util.List;

/**
 * Raw access to a listener for the hostile-input cases: a transport's TCK subclass implements
 * it with plain sockets (or the transport's own raw channel), bypassing our sending code, so
 * the TCK can send what a correct source never would.
 */
public interface RawPeer {

    /** A raw byte stream into the listener. */
    interface RawStream extends AutoCloseable {
        /** Writes bytes as they are. */
        void write(byte[] bytes) throws IOException;

        /**
         * Reads what the destination answers on the urgent stream until it closes it, at most
         * {@code timeout}.
         *
         * @return every byte received before the close
         * @throws java.util.concurrent.TimeoutException-like AssertionError when it did not close in time
         */
        byte[] readUntilClosed(Duration timeout) throws IOException;

        @Override
        void close() throws IOException;
    }

    /** Opens a connection and sends nothing: the test writes the preamble (or garbage) itself. */
    RawStream open(String listenerUri) throws IOException;

    /**
     * Performs a correct handshake for {@code regions} with one background stream and the given
     * data digest and max payload, and returns the background stream; answers arrive through
     * {@link RawStream#readUntilClosed}.
     */
    RawStream openSession(String listenerUri, List<RegionDescriptor> regions, boolean dataDigest, int maxPayload) throws IOException;
}
