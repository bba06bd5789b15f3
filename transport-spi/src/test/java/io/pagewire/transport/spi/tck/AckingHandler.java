package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.TransportException;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

/** A handler for handshake tests: acknowledges completion (on the destination side) and records the first error. */
public final class AckingHandler implements MessageHandler {
    /** Counted down when the peer's COMPLETE arrives. */
    public final CountDownLatch completed = new CountDownLatch(1);
    /** The first error reported, or null. */
    public final AtomicReference<TransportException> error = new AtomicReference<>();
    /** The connection, from {@code onOpen} (a test may set it itself as soon as accept returns). */
    public volatile Connection self;
    private final boolean acks;

    /** @param acks whether to answer COMPLETE with the acknowledgement (the destination's part) */
    public AckingHandler(boolean acks) {
        this.acks = acks;
    }

    @Override
    public void onOpen(Connection c) {
        self = c;
    }

    @Override
    public void onComplete() {
        if (acks) {
            self.urgent().sendComplete();
        }
        completed.countDown();
    }

    @Override
    public void onError(TransportException e) {
        error.compareAndSet(null, e);
    }
}
