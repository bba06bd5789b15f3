package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.ConnectionStats;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.wire.FrameType;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * The source's background queue: a bounded single-producer, single-consumer ring of descriptors
 * (region, first page, count), never page data, between the application's thread and the one
 * sender thread. Offers beyond the capacity are refused (back pressure); pending page bytes are
 * reported through {@link ConnectionStats} and bounded by {@code (capacity + 2) x batch bytes}.
 * Round ends and COMPLETE are entries like the others: with one consumer, order is kept.
 *
 * <h2>Memory ordering, and no allocation</h2>
 * The producer writes an entry's fields, then publishes it with an ordered store of
 * {@code tail}; the consumer reads {@code tail} (a volatile load) before the fields, and releases
 * the slot with an ordered store of {@code head}. A side that must wait announces itself in a
 * volatile field, re-checks, then parks; the other side unparks it after publishing. Parking and
 * unparking allocate nothing, unlike a {@code Condition}, so a steady stream of single pages costs
 * no garbage. The background lane has one producer (the SPI says so); a second one concurrently
 * would be serialised by {@link #producer} rather than corrupt the ring.
 */
final class SourceQueue {
    // Entry kinds are frame types; 0 (INVALID) means none.
    static final int NONE = FrameType.INVALID;
    static final int PAGES = FrameType.PAGES;
    static final int ZERO_RUN = FrameType.ZERO_RUN;
    static final int SKIP_RUN = FrameType.SKIP_RUN;
    static final int CONTROL = FrameType.CONTROL;
    static final int ROUND_END = FrameType.ROUND_END;
    static final int COMPLETE = FrameType.COMPLETE;
    private static final long PARK_NS = TimeUnit.MILLISECONDS.toNanos(50);

    /** One taken entry; the sender reuses its own. */
    static final class Entry {
        int kind;
        int region;
        long first;
        long count;
        byte[] payload;
    }

    private final int capacity;
    private final int[] kinds;
    private final int[] regions;
    private final long[] firsts;
    private final long[] counts;
    private final byte[][] payloads;
    private final AtomicLong head = new AtomicLong(); // next to take; written by the consumer
    private final AtomicLong tail = new AtomicLong(); // next to fill; written by the producer
    private final ReentrantLock producer = new ReentrantLock();
    private volatile boolean busy;
    private volatile boolean completing;
    private volatile boolean closed;
    private volatile Thread waitingConsumer;
    private volatile Thread waitingProducer;
    private final ConnectionStats stats;
    private final Supplier<TransportException> failure;

    SourceQueue(int capacity, ConnectionStats stats, Supplier<TransportException> failure) {
        this.capacity = capacity;
        this.kinds = new int[capacity];
        this.regions = new int[capacity];
        this.firsts = new long[capacity];
        this.counts = new long[capacity];
        this.payloads = new byte[capacity][];
        this.stats = stats;
        this.failure = failure;
    }

    /** @return false when full */
    boolean offer(int kind, int region, long first, long count, long bytes, byte[] payload) {
        if (!producer.tryLock()) {
            producer.lock();
        }
        try {
            checkOpen();
            if (completing) {
                throw new IllegalStateException("background lane: send after sendComplete()");
            }
            long t = tail.get();
            if (t - head.get() == capacity) {
                return false;
            }
            int i = (int) (t % capacity);
            kinds[i] = kind;
            regions[i] = region;
            firsts[i] = first;
            counts[i] = count;
            payloads[i] = payload;
            if (kind == COMPLETE) {
                completing = true;
            }
            stats.addPending(bytes);
            tail.lazySet(t + 1); // publishes the entry's fields
        } finally {
            producer.unlock();
        }
        Thread c = waitingConsumer;
        if (c != null) {
            LockSupport.unpark(c);
        }
        return true;
    }

    boolean completing() {
        return completing;
    }

    private boolean full() {
        return tail.get() - head.get() == capacity;
    }

    /** Blocks while the ring is full. */
    void awaitSpace() {
        while (full()) {
            checkOpen();
            parkProducer(() -> !full());
        }
        checkOpen();
    }

    /** Blocks until the queue is empty and the sender idle. */
    void awaitDrained() {
        while (tail.get() != head.get() || busy) {
            checkOpen();
            parkProducer(() -> tail.get() == head.get() && !busy);
        }
        checkOpen();
    }

    private void parkProducer(java.util.function.BooleanSupplier done) {
        waitingProducer = Thread.currentThread();
        try {
            if (!done.getAsBoolean() && !closed && failure.get() == null) {
                LockSupport.parkNanos(this, PARK_NS);
                if (Thread.interrupted()) {
                    Thread.currentThread().interrupt();
                    throw new TransportException(TransportException.Kind.CLOSED, "interrupted while waiting for the background lane");
                }
            }
        } finally {
            waitingProducer = null;
        }
    }

    /** Blocks for the next entry; marks the sender busy. @return false once closed */
    boolean take(Entry into) throws InterruptedException {
        while (true) {
            if (poll(into)) {
                return true;
            }
            if (closed) {
                return false;
            }
            busy = false;
            wakeProducer();
            waitingConsumer = Thread.currentThread();
            try {
                if (tail.get() == head.get() && !closed) {
                    LockSupport.parkNanos(this, PARK_NS);
                }
            } finally {
                waitingConsumer = null;
            }
            if (Thread.interrupted()) {
                throw new InterruptedException("background sender interrupted");
            }
        }
    }

    /** Takes the next entry if there is one, without blocking. */
    boolean poll(Entry into) {
        if (closed) {
            return false;
        }
        long h = head.get();
        if (h == tail.get()) {
            return false;
        }
        int i = (int) (h % capacity);
        into.kind = kinds[i];
        into.region = regions[i];
        into.first = firsts[i];
        into.count = counts[i];
        into.payload = payloads[i];
        payloads[i] = null;
        busy = true;
        head.lazySet(h + 1); // frees the slot for the producer
        wakeProducer();
        return true;
    }

    private void wakeProducer() {
        Thread p = waitingProducer;
        if (p != null) {
            LockSupport.unpark(p);
        }
    }

    /** The sender finished what it took. */
    void idle() {
        if (tail.get() == head.get()) {
            busy = false;
        }
        wakeProducer();
    }

    void close() {
        closed = true;
        Thread c = waitingConsumer;
        if (c != null) {
            LockSupport.unpark(c);
        }
        wakeProducer();
    }

    private void checkOpen() {
        TransportException f = failure.get();
        if (f != null) {
            throw Channel.copy(f);
        }
        if (closed) {
            throw new TransportException(TransportException.Kind.CLOSED, "connection closed");
        }
    }
}
