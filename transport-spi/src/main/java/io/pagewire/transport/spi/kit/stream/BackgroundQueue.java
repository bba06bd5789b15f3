package io.pagewire.transport.spi.kit.stream;

import io.pagewire.transport.spi.ConnectionStats;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * A source background work queue: a bounded ring of batch descriptors taken by sender threads,
 * plus one barrier slot per taker for ROUND_END and COMPLETE. {@link StreamConnection} gives each
 * channel its own queue with one taker (its sender thread), so channels never share a lock.
 *
 * <p>A barrier is placed only when the ring is empty, i.e. every batch before it has been taken;
 * a taker always looks at its barrier slot before taking from the ring, so the barrier follows
 * all batches it took before and precedes all it takes after. With the receiver waiting for the
 * barrier on all channels, a page of round n+1 is never placed before a page of round n.
 *
 * <p>Entries are descriptors (region, first page, count), never page data: memory is bounded
 * by {@code capacity} descriptors; page bytes pending are bounded by
 * {@code (capacity + takers) * batchBytes} and reported through {@link ConnectionStats}.
 * One lock guards everything; it is shared only by one channel's producer and its sender.
 */
final class BackgroundQueue {
    // Entry kinds are frame types; 0 (INVALID) means none.
    static final int PAGES = FrameType.PAGES;
    static final int ZERO_RUN = FrameType.ZERO_RUN;
    static final int SKIP_RUN = FrameType.SKIP_RUN;
    static final int CONTROL = FrameType.CONTROL;
    static final int ROUND_END = FrameType.ROUND_END;
    static final int COMPLETE = FrameType.COMPLETE;
    /** Scattered pages of one region gathered by the producer; the pages are in the entry's list. */
    static final int PAGE_LIST = FrameType.PAGE_LIST;

    /** One taken entry; each sender thread reuses its own. */
    static final class Entry {
        int kind;
        int region;
        long first;
        long count;
        long bytes;
        byte[] payload;
        /** For PAGE_LIST: the page indices, {@code count} of them. */
        final long[] list = new long[Wire.MAX_LIST_PAGES];
    }

    private final ReentrantLock lock = new ReentrantLock();
    /** Sender threads wait here for work; signalled once per offer (no wake-up storms). */
    private final Condition work = lock.newCondition();
    /** The producer waits here for space, an empty ring or idleness. */
    private final Condition changed = lock.newCondition();
    private final int capacity;
    private final int[] kinds;
    private final int[] regions;
    private final long[] firsts;
    private final long[] counts;
    private final long[] bytes;
    private final byte[][] payloads;
    private final long[][] lists;
    private int head;
    private int size;
    private final int[] barrierKind;
    private final long[] barrierValue;
    private int inFlight;
    private boolean completing;
    private final ConnectionStats stats;
    private final Supplier<TransportException> failure;
    private volatile boolean closed;

    BackgroundQueue(int capacity, int channels, ConnectionStats stats, Supplier<TransportException> failure) {
        this.capacity = capacity;
        this.kinds = new int[capacity];
        this.regions = new int[capacity];
        this.firsts = new long[capacity];
        this.counts = new long[capacity];
        this.bytes = new long[capacity];
        this.payloads = new byte[capacity][];
        this.lists = new long[capacity][];
        this.barrierKind = new int[channels];
        this.barrierValue = new long[channels];
        this.stats = stats;
        this.failure = failure;
    }

    /**
     * Adds a batch without blocking.
     *
     * @return true when added, false when the ring is full
     */
    boolean offer(int kind, int region, long first, long count, long byteCount, byte[] payload) {
        return add(kind, region, first, count, byteCount, payload, null, 0);
    }

    /**
     * Adds a page list without blocking (the pages are copied).
     *
     * @return true when added, false when the ring is full
     */
    boolean offerList(int region, long[] pages, int n, long byteCount) {
        return add(PAGE_LIST, region, 0, n, byteCount, null, pages, n);
    }

    private boolean add(int kind, int region, long first, long count, long byteCount, byte[] payload, long[] pages, int n) {
        lock.lock();
        try {
            checkOpen();
            if (size == capacity) {
                return false;
            }
            int tail = (head + size) % capacity;
            if (pages != null) {
                if (lists[tail] == null) {
                    lists[tail] = new long[Wire.MAX_LIST_PAGES];
                }
                System.arraycopy(pages, 0, lists[tail], 0, n);
            }
            kinds[tail] = kind;
            regions[tail] = region;
            firsts[tail] = first;
            counts[tail] = count;
            bytes[tail] = byteCount;
            payloads[tail] = payload;
            size++;
            stats.addPending(byteCount);
            work.signal();
            return true;
        } finally {
            lock.unlock();
        }
    }

    /** @return free ring slots now */
    int freeSlots() {
        lock.lock();
        try {
            return capacity - size;
        } finally {
            lock.unlock();
        }
    }

    /** Blocks until the ring has room (or the connection fails). */
    void awaitSpace() {
        lock.lock();
        try {
            while (size == capacity) {
                checkOpen();
                awaitChanged();
            }
            checkOpen();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Places a barrier on every channel once all queued batches have been taken.
     *
     * @param kind {@link #ROUND_END} or {@link #COMPLETE}
     */
    void barrier(int kind, long value) {
        lock.lock();
        try {
            checkOpen();
            while (size > 0 || anyBarrierPending()) {
                awaitChanged();
                checkOpen();
            }
            if (kind == COMPLETE) {
                completing = true;
            }
            for (int c = 0; c < barrierKind.length; c++) {
                barrierKind[c] = kind;
                barrierValue[c] = value;
            }
            work.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private boolean anyBarrierPending() {
        for (int k : barrierKind) {
            if (k != 0) {
                return true;
            }
        }
        return false;
    }

    /**
     * Takes the next work for a channel: its barrier first, else the next entry of the ring; when
     * that entry is a short page run, also the page runs of the same region right behind it, up to
     * {@code listLimit[region]} pages in all, so that scattered pages travel in one PAGE_LIST frame.
     *
     * @param into receives the entries (reused)
     * @return entries taken (at least 1), or 0 when the queue is closed
     */
    int take(int channel, Entry[] into, int[] listLimit) throws InterruptedException {
        lock.lockInterruptibly();
        try {
            while (true) {
                if (closed) {
                    return 0;
                }
                if (barrierKind[channel] != 0) {
                    Entry e = into[0];
                    e.kind = barrierKind[channel];
                    e.first = barrierValue[channel];
                    e.region = 0;
                    e.count = 0;
                    e.bytes = 0;
                    e.payload = null;
                    barrierKind[channel] = 0;
                    inFlight++;
                    changed.signalAll();
                    return 1;
                }
                if (size > 0) {
                    int k = 0;
                    long pages = 0;
                    do {
                        Entry e = into[k++];
                        e.kind = kinds[head];
                        e.region = regions[head];
                        e.first = firsts[head];
                        e.count = counts[head];
                        e.bytes = bytes[head];
                        e.payload = payloads[head];
                        payloads[head] = null;
                        if (e.kind == PAGE_LIST) {
                            System.arraycopy(lists[head], 0, e.list, 0, (int) e.count);
                        }
                        head = (head + 1) % capacity;
                        size--;
                        inFlight++;
                        pages += e.count;
                    } while (size > 0 && k < into.length && into[0].kind == PAGES && kinds[head] == PAGES
                            && regions[head] == into[0].region && pages + counts[head] <= listLimit[into[0].region]);
                    changed.signalAll();
                    return k;
                }
                work.await();
            }
        } finally {
            lock.unlock();
        }
    }

    /** The entry has been handed to the kernel. */
    void done(Entry e) {
        lock.lock();
        try {
            inFlight--;
            stats.addPending(-e.bytes);
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Blocks until every entry has been handed to the kernel. */
    void awaitIdle() {
        lock.lock();
        try {
            while (size > 0 || inFlight > 0 || anyBarrierPending()) {
                checkOpen();
                awaitChanged();
            }
            checkOpen();
        } finally {
            lock.unlock();
        }
    }

    /** @return true after COMPLETE was queued: no more sends */
    boolean completing() {
        lock.lock();
        try {
            return completing;
        } finally {
            lock.unlock();
        }
    }

    /** Wakes and stops everyone. */
    void close() {
        lock.lock();
        try {
            closed = true;
            work.signalAll();
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void checkOpen() {
        TransportException f = failure.get();
        if (f != null) {
            throw new TransportException(f.kind(), f.getMessage(), f);
        }
        if (closed) {
            throw new TransportException(TransportException.Kind.CLOSED, "connection closed");
        }
    }

    private void awaitChanged() {
        try {
            changed.await(100, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new TransportException(TransportException.Kind.CLOSED, "interrupted while waiting for the background lane", e);
        }
    }
}
