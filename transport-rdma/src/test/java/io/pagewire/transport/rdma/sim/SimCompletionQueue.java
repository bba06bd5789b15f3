package io.pagewire.transport.rdma.sim;

import io.pagewire.transport.rdma.verbs.CompletionQueue;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.rdma.verbs.WorkCompletions;

import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A completion queue with a bounded ring, as on hardware: a completion that finds the ring full
 * is an overrun, which is fatal for the queue (every later poll fails). The completion channel
 * follows {@code ibv_req_notify_cq}: armed, the next completion raises one event.
 */
final class SimCompletionQueue implements CompletionQueue {
    private final SimFabric fabric;
    private final int capacity;
    private final long[] wrId;
    private final int[] status;
    private final int[] opcode;
    private final int[] bytes;
    private int head;
    private int size;
    private boolean armed;
    private boolean event;
    private boolean woken;
    private boolean overrun;
    private boolean closed;
    private final ReentrantLock lock = new ReentrantLock();
    /** The thread in {@link #awaitEvent}, if any (one poller per queue); parked, not waiting on a Condition: no allocation per wait. */
    private volatile Thread waiter;

    SimCompletionQueue(SimFabric fabric, int capacity) {
        this.fabric = fabric;
        this.capacity = capacity;
        this.wrId = new long[capacity];
        this.status = new int[capacity];
        this.opcode = new int[capacity];
        this.bytes = new int[capacity];
    }

    /** Adds a completion (hardware side). */
    void add(long id, int st, int op, int len) {
        lock.lock();
        try {
            if (closed) {
                return;
            }
            if (size == capacity) {
                overrun = true;
                event = true;
                wake();
                return;
            }
            int tail = (head + size) % capacity;
            wrId[tail] = id;
            status[tail] = st;
            opcode[tail] = op;
            bytes[tail] = len;
            size++;
            fabric.stats.completions.increment();
            if (armed) {
                armed = false;
                event = true;
                wake();
            }
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int poll(WorkCompletions into) throws VerbsException {
        fabric.stats.pollCalls.increment();
        into.reset();
        lock.lock();
        try {
            if (overrun) {
                throw new VerbsException("completion queue overrun: more than " + capacity + " completions were outstanding");
            }
            int n = 0;
            while (size > 0 && into.add(wrId[head], status[head], opcode[head], bytes[head])) {
                head = (head + 1) % capacity;
                size--;
                n++;
            }
            return n;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void requestNotify() {
        lock.lock();
        try {
            armed = true;
        } finally {
            lock.unlock();
        }
    }

    private void wake() {
        Thread w = waiter;
        if (w != null) {
            LockSupport.unpark(w);
        }
    }

    @Override
    public boolean awaitEvent(long timeoutNs) {
        long deadline = System.nanoTime() + timeoutNs;
        waiter = Thread.currentThread();
        try {
            while (true) {
                lock.lock();
                try {
                    if (event || woken || closed) {
                        boolean got = event;
                        event = false;
                        woken = false;
                        return got;
                    }
                } finally {
                    lock.unlock();
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                LockSupport.parkNanos(this, left);
                if (Thread.currentThread().isInterrupted()) {
                    return false;
                }
            }
        } finally {
            waiter = null;
        }
    }

    @Override
    public void wakeup() {
        lock.lock();
        try {
            woken = true;
        } finally {
            lock.unlock();
        }
        wake();
    }

    @Override
    public void close() {
        lock.lock();
        try {
            closed = true;
        } finally {
            lock.unlock();
        }
        wake();
    }

    @Override
    public String toString() {
        return "SimCompletionQueue[capacity=" + capacity + "]";
    }
}
