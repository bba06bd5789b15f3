package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.WireException;

import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The destination's barrier across background streams for ROUND_END and COMPLETE: each stream's
 * thread waits here until every stream has reached the same barrier; the last to arrive runs
 * the action (the handler's {@code onRoundEnd} / {@code onComplete}) before any is released.
 * So no page sent after a round end is placed before every page sent before it. Aborted (every
 * waiter released with the cause) when the connection fails.
 */
final class Barrier {
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition released = lock.newCondition();
    private final int parties;
    private int arrived;
    private int kind;
    private long value;
    private long generation;
    private TransportException aborted;

    Barrier(int parties) {
        this.parties = parties;
    }

    /**
     * Arrives at a barrier and waits for the other channels.
     *
     * @param channel the arriving channel (for messages)
     * @param kind frame type (ROUND_END or COMPLETE)
     * @param value round number
     * @param action run once, by the last to arrive, before anyone is released
     */
    void arrive(int channel, int kind, long value, Runnable action) {
        try {
            arriveInterruptibly(channel, kind, value, action);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new TransportException(TransportException.Kind.CLOSED, "interrupted at barrier " + name(kind, value), e);
        }
    }

    private void arriveInterruptibly(int channel, int kind, long value, Runnable action) throws InterruptedException {
        lock.lockInterruptibly();
        boolean last;
        long myGeneration;
        try {
            check();
            if (arrived == 0) {
                this.kind = kind;
                this.value = value;
            } else if (this.kind != kind || this.value != value) {
                throw new WireException("background channel " + channel + " reached barrier " + name(kind, value)
                        + " while the others are at " + name(this.kind, this.value));
            }
            arrived++;
            last = arrived == parties;
            myGeneration = generation;
        } finally {
            lock.unlock();
        }
        if (last) {
            // The others wait: run the action outside the lock so abort() never blocks on it.
            action.run();
            lock.lock();
            try {
                arrived = 0;
                generation++;
                released.signalAll();
            } finally {
                lock.unlock();
            }
            return;
        }
        lock.lockInterruptibly();
        try {
            while (generation == myGeneration) {
                check();
                released.await();
            }
        } finally {
            lock.unlock();
        }
    }

    /** Releases every waiter with {@code cause}. */
    void abort(TransportException cause) {
        lock.lock();
        try {
            if (aborted == null) {
                aborted = cause;
            }
            released.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void check() {
        if (aborted != null) {
            throw new TransportException(aborted.kind(), aborted.getMessage(), aborted);
        }
    }

    private static String name(int kind, long value) {
        return kind == FrameType.COMPLETE ? "COMPLETE" : "ROUND_END " + value;
    }
}
