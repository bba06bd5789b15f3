package io.pagewire.transport.unix;

import io.pagewire.transport.spi.kit.stream.StreamConnection;
import io.pagewire.linux.NativeSocket;

import java.util.Set;

/**
 * A connection over unix domain sockets: the kit's stream connection, plus the regions handed over
 * instead of copied. On the destination the received descriptors go to the handler before any frame.
 */
final class UnixConnection extends StreamConnection {
    private final Set<Integer> shared;
    private final SharedMemory received; // destination with shared memory, else null

    UnixConnection(Setup setup, NativeSocket urgent, NativeSocket[] background, int queueDepth, int backgroundNice,
                   Set<Integer> shared, SharedMemory received) {
        super("unix", setup, urgent, background, queueDepth, backgroundNice);
        this.shared = Set.copyOf(shared);
        this.received = received;
    }

    @Override
    public Set<Integer> sharedRegions() {
        return shared;
    }

    @Override
    protected void opened() {
        if (received != null) {
            received.handTo(handler());
        }
    }

    @Override
    protected void release() {
        super.release();
        if (received != null) {
            received.close(); // descriptors the handler did not take
        }
    }
}
