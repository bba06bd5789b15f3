package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;

import java.util.concurrent.atomic.AtomicLong;

/**
 * The bytes a listener holds for first messages still arriving (HELLO payloads up to 1 MiB each),
 * bounded over all handshakes together: a buffer grows only as bytes arrive, and each growth is
 * reserved here first. Without it, many peers each holding an almost complete large HELLO would
 * hold as many megabytes; with it they hold at most {@link #limitBytes()} between them, and the
 * reservations return when their handshakes end.
 *
 * <p>Thread-safe.
 */
public final class HandshakeBudget {
    /** Default bound: 16 MiB, sixteen of the largest HELLOs at once (a real one is a few hundred bytes). */
    public static final long DEFAULT_BYTES = 16L << 20;

    private final long limitBytes;
    private final AtomicLong inUse = new AtomicLong();

    /** @param limitBytes bytes all handshakes may hold together */
    public HandshakeBudget(long limitBytes) {
        this.limitBytes = limitBytes;
    }

    /**
     * Reserves {@code bytes} more.
     *
     * @throws TransportException {@code HANDSHAKE} when the budget would be exceeded (the peer is told to try again)
     */
    public void reserve(long bytes) {
        long now = inUse.addAndGet(bytes);
        if (now > limitBytes) {
            inUse.addAndGet(-bytes);
            throw new TransportException(Kind.HANDSHAKE, "the destination holds " + (now - bytes) + " bytes of handshakes in progress"
                    + " (limit " + limitBytes + "); try again");
        }
    }

    /** Returns {@code bytes} reserved before. */
    public void release(long bytes) {
        inUse.addAndGet(-bytes);
    }

    /** @return bytes reserved now */
    public long inUse() {
        return inUse.get();
    }

    /** @return the bound */
    public long limitBytes() {
        return limitBytes;
    }
}
