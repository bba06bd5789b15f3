package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * Sources whose handshake succeeded, waiting for {@code Listener.accept}: bounded (a source beyond
 * the bound is refused by the listener, never queued), and the accept loop every listener shares.
 *
 * @param <S> what a waiting source is
 */
public final class ReadyQueue<S> {
    private static final long POLL_NS = TimeUnit.MILLISECONDS.toNanos(200);
    private final BlockingQueue<S> ready;
    private final int capacity;

    /** @param capacity most sources waiting at once */
    public ReadyQueue(int capacity) {
        this.capacity = capacity;
        this.ready = new ArrayBlockingQueue<>(capacity);
    }

    /** @return the bound */
    public int capacity() {
        return capacity;
    }

    /** @return false when full (the caller refuses the source) */
    public boolean offer(S s) {
        return ready.offer(s);
    }

    /** @return and removes every waiting source (to refuse them on close) */
    public List<S> drain() {
        List<S> out = new ArrayList<>();
        ready.drainTo(out);
        return out;
    }

    /**
     * Waits for the next ready source and starts its connection.
     *
     * @param start makes the connection; null when the source went away meanwhile (the next one is tried)
     * @param closed whether the listener was closed
     * @param failure why the listener stopped listening by itself, or null
     * @throws TransportException {@code TIMEOUT} when none arrives in time, {@code CLOSED} when closed or interrupted
     */
    public <C> C accept(String uri, Duration timeout, Function<S, C> start, BooleanSupplier closed,
                        Supplier<TransportException> failure) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            if (closed.getAsBoolean()) {
                throw new TransportException(Kind.CLOSED, "listener " + uri + " is closed");
            }
            TransportException f = failure.get();
            if (f != null) {
                throw new TransportException(f.kind(), f.getMessage(), f);
            }
            long left = deadline - System.nanoTime();
            S s;
            try {
                s = ready.poll(Math.max(0, Math.min(left, POLL_NS)), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new TransportException(Kind.CLOSED, "interrupted while accepting on " + uri, e);
            }
            if (s == null) {
                if (System.nanoTime() - deadline >= 0) {
                    throw new TransportException(Kind.TIMEOUT, "no source connected to " + uri + " within " + timeout.toMillis() + " ms");
                }
                continue;
            }
            C c = start.apply(s);
            if (c != null) {
                return c;
            }
        }
    }
}
