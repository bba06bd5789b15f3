package io.pagewire.transport.rdma.sim;

import io.pagewire.transport.rdma.verbs.QpConfig;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.rdma.verbs.SendBatch;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A simulated reliable-connected queue pair. Its send queue is executed in order by its own
 * engine thread (the "NIC"), which checks every work request as hardware does and really copies
 * the bytes between registered memory:
 * <ul>
 * <li>local scatter/gather entry: the lkey names a live registration of this queue pair's
 *     protection domain that covers the buffer (else {@code LOC_PROT_ERR});</li>
 * <li>RDMA WRITE / READ: the rkey names a live registration of the peer's protection domain that
 *     covers the remote range and grants remote write / read (else {@code REM_ACCESS_ERR}, and the
 *     peer's queue pair goes to the error state too, as a responder does on an access
 *     violation);</li>
 * <li>SEND: consumes the peer's oldest posted receive; none posted is a receiver-not-ready error
 *     (with {@code rnrRetry} 7 it waits instead); a message longer than the receive buffer fails
 *     both sides ({@code LOC_LEN_ERR} at the receiver, {@code REM_INV_REQ_ERR} at the sender);</li>
 * <li>completions go to the completion queues in order; a failed work request is always reported,
 *     and everything after it, and every posted receive, is flushed with {@code WR_FLUSH_ERR}.</li>
 * </ul>
 * Failure injection (public methods) breaks it the ways hardware and networks break.
 *
 * <p>Locking: one lock per queue pair guards its queues and state; the engine never holds two
 * queue-pair locks at once.
 */
public final class SimQueuePair implements QueuePair {
    private enum State { INIT, READY, ERROR, DESTROYED }

    private final SimFabric fabric;
    private final SimFabric.SimPd pd;
    private final SimCompletionQueue cq;
    private final QpConfig config;
    private final int serverPort;
    private final boolean passive;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private State state = State.INIT;
    private String asyncError;
    private SimQueuePair peer;
    private int injectedStatus = -1;
    private volatile boolean partitioned;

    // send queue ring
    private final int[] sqOpcode;
    private final int[] sqFlags;
    private final long[] sqWrId;
    private final long[] sqLocal;
    private final int[] sqLength;
    private final int[] sqLkey;
    private final long[] sqRemote;
    private final int[] sqRkey;
    private int sqHead;
    private int sqSize;
    // receive queue ring
    private final long[] rqWrId;
    private final long[] rqAddress;
    private final int[] rqLength;
    private final int[] rqLkey;
    private int rqHead;
    private int rqSize;

    private final Thread engine;
    private boolean engineIdle; // guarded by lock
    private static final long IDLE_PARK_NS = java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(100);

    SimQueuePair(SimFabric fabric, SimFabric.SimPd pd, SimCompletionQueue cq, QpConfig config, int serverPort, boolean passive) {
        this.fabric = fabric;
        this.pd = pd;
        this.cq = cq;
        this.config = config;
        this.serverPort = serverPort;
        this.passive = passive;
        int sd = config.sendDepth();
        sqOpcode = new int[sd];
        sqFlags = new int[sd];
        sqWrId = new long[sd];
        sqLocal = new long[sd];
        sqLength = new int[sd];
        sqLkey = new int[sd];
        sqRemote = new long[sd];
        sqRkey = new int[sd];
        int rd = config.recvDepth();
        rqWrId = new long[rd];
        rqAddress = new long[rd];
        rqLength = new int[rd];
        rqLkey = new int[rd];
        engine = Thread.ofPlatform().daemon().name("pagewire-sim-nic-" + config.name() + (passive ? "-passive" : "-active"))
                .unstarted(this::engineLoop);
        fabric.stats.liveQueuePairs.incrementAndGet();
        engine.start();
    }

    // ================================================================== public: inspection and failure injection

    /** @return the name given at creation ({@code urgent}, {@code background}, ...) */
    public String name() {
        return config.name();
    }

    /** @return true for the queue pair of an accepted (listener-side) endpoint */
    public boolean isPassive() {
        return passive;
    }

    /** @return the listener port this queue pair's connection was made to, or -1 before connecting */
    public int serverPort() {
        return serverPort;
    }

    /** @return the connected peer, or null */
    public SimQueuePair peer() {
        lock.lock();
        try {
            return peer;
        } finally {
            lock.unlock();
        }
    }

    /** @return true while the queue pair can move data */
    public boolean isReady() {
        lock.lock();
        try {
            return state == State.READY;
        } finally {
            lock.unlock();
        }
    }

    /**
     * The next work request this queue pair executes completes with {@code status} instead
     * (e.g. {@link Verbs#WC_GENERAL_ERR}, {@link Verbs#WC_REM_ACCESS_ERR}); the queue pair then
     * goes to the error state as it would on hardware.
     */
    public void injectCompletionError(int status) {
        if (status == Verbs.WC_SUCCESS || status == Verbs.WC_WR_FLUSH_ERR) {
            throw new IllegalArgumentException("inject a real error status, not " + Verbs.statusName(status));
        }
        lock.lock();
        try {
            injectedStatus = status;
        } finally {
            lock.unlock();
        }
    }

    /** The link of this connection fails: both queue pairs go to the error state at once (a cable pull, a peer process killed). */
    public void breakConnection() {
        SimQueuePair p = peer();
        toError("connection lost (simulated link failure)");
        if (p != null) {
            p.toError("connection lost (simulated link failure)");
        }
    }

    /**
     * The network between the two ends silently drops everything: no error is raised until a
     * side posts work, which then fails with {@code RETRY_EXC_ERR} after the fabric's retry
     * timeout, as on hardware when a peer vanishes without a disconnect.
     */
    public void partition() {
        SimQueuePair p = peer();
        partitioned = true;
        if (p != null) {
            p.partitioned = true;
        }
    }

    // ================================================================== QueuePair

    @Override
    public void postSend(SendBatch b) throws VerbsException {
        int n = b.count();
        lock.lock();
        try {
            if (state != State.READY) {
                throw new VerbsException("ibv_post_send on queue pair " + config.name() + ": queue pair is " + stateText());
            }
            if (sqSize + n > sqOpcode.length) {
                throw new VerbsException("ibv_post_send on queue pair " + config.name() + ": send queue full (" + sqSize + " outstanding + "
                        + n + " > max_send_wr " + sqOpcode.length + ")");
            }
            for (int i = 0; i < n; i++) {
                int op = b.opcode(i);
                if (op != Verbs.WR_RDMA_WRITE && op != Verbs.WR_SEND && op != Verbs.WR_RDMA_READ) {
                    throw new VerbsException("ibv_post_send: unsupported opcode " + op);
                }
                if (b.length(i) < 0) {
                    throw new VerbsException("ibv_post_send: negative length " + b.length(i));
                }
            }
            for (int i = 0; i < n; i++) {
                int t = (sqHead + sqSize) % sqOpcode.length;
                sqOpcode[t] = b.opcode(i);
                sqFlags[t] = b.flags(i);
                sqWrId[t] = b.wrId(i);
                sqLocal[t] = b.localAddress(i);
                sqLength[t] = b.length(i);
                sqLkey[t] = b.lkey(i);
                sqRemote[t] = b.remoteAddress(i);
                sqRkey[t] = b.rkey(i);
                sqSize++;
            }
            fabric.stats.postSendCalls.increment();
            signal();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void postRecv(long wrId, long address, int length, int lkey) throws VerbsException {
        lock.lock();
        try {
            if (state != State.READY && state != State.INIT) {
                throw new VerbsException("ibv_post_recv on queue pair " + config.name() + ": queue pair is " + stateText());
            }
            if (rqSize == rqWrId.length) {
                throw new VerbsException("ibv_post_recv on queue pair " + config.name() + ": receive queue full (max_recv_wr " + rqWrId.length + ")");
            }
            int t = (rqHead + rqSize) % rqWrId.length;
            rqWrId[t] = wrId;
            rqAddress[t] = address;
            rqLength[t] = length;
            rqLkey[t] = lkey;
            rqSize++;
            fabric.stats.postRecvCalls.increment();
            signal();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public String asyncError() {
        lock.lock();
        try {
            return asyncError;
        } finally {
            lock.unlock();
        }
    }

    private String stateText() {
        return switch (state) {
            case INIT -> "not connected yet";
            case READY -> "ready";
            case ERROR -> "in the error state" + (asyncError == null ? "" : " (" + asyncError + ")");
            case DESTROYED -> "destroyed";
        };
    }

    // ================================================================== connection management (package)

    void connectTo(SimQueuePair other) {
        lock.lock();
        try {
            peer = other;
            if (state == State.INIT) {
                state = State.READY;
            }
            signal();
        } finally {
            lock.unlock();
        }
    }

    /** Moves to the error state: posted receives are flushed now, the send queue by the engine in order. */
    void toError(String why) {
        lock.lock();
        try {
            if (state == State.ERROR || state == State.DESTROYED) {
                return;
            }
            state = State.ERROR;
            if (asyncError == null) {
                asyncError = why;
            }
            while (rqSize > 0) {
                cq.add(rqWrId[rqHead], Verbs.WC_WR_FLUSH_ERR, Verbs.WC_RECV, 0);
                rqHead = (rqHead + 1) % rqWrId.length;
                rqSize--;
            }
            signal();
        } finally {
            lock.unlock();
        }
    }

    void destroy() {
        lock.lock();
        try {
            if (state == State.DESTROYED) {
                return;
            }
            state = State.DESTROYED;
            signal();
        } finally {
            lock.unlock();
        }
        SimQueuePair p = peer();
        if (p != null) {
            p.toError("disconnected: the peer destroyed its queue pair");
        }
        fabric.forget(this);
        fabric.stats.liveQueuePairs.decrementAndGet();
        if (Thread.currentThread() != engine) {
            try {
                engine.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    // ================================================================== the engine ("NIC")

    private void engineLoop() {
        int op;
        int flags;
        long wrId;
        long local;
        int length;
        int lkey;
        long remote;
        int rkey;
        while (true) {
            int injected;
            lock.lock();
            try {
                while (true) {
                    if (state == State.DESTROYED) {
                        return;
                    }
                    if (state == State.ERROR && sqSize > 0) {
                        flushSendQueue();
                    }
                    if (state == State.READY && sqSize > 0) {
                        break;
                    }
                    // Idle: park (no allocation, unlike a Condition); whoever posts work or changes state unparks.
                    engineIdle = true;
                    lock.unlock();
                    try {
                        LockSupport.parkNanos(this, IDLE_PARK_NS);
                    } finally {
                        lock.lock();
                        engineIdle = false;
                    }
                }
                int h = sqHead;
                op = sqOpcode[h];
                flags = sqFlags[h];
                wrId = sqWrId[h];
                local = sqLocal[h];
                length = sqLength[h];
                lkey = sqLkey[h];
                remote = sqRemote[h];
                rkey = sqRkey[h];
                injected = injectedStatus;
                injectedStatus = -1;
            } finally {
                lock.unlock();
            }
            int status;
            String why = null;
            if (injected >= 0) {
                status = injected;
                why = "injected completion error " + Verbs.statusName(injected);
                if (injected == Verbs.WC_REM_ACCESS_ERR) {
                    SimQueuePair p = peer();
                    if (p != null) {
                        p.toError("remote access error (injected)");
                    }
                }
            } else if (partitioned) {
                status = awaitRetryTimeout();
                why = "no acknowledgement from the peer within the retry timeout (network partition)";
            } else {
                Outcome o = execute(op, local, length, lkey, remote, rkey);
                status = o.status;
                why = o.why;
            }
            // Complete in order: the head first, then (on error) flush the rest.
            lock.lock();
            try {
                if (state == State.DESTROYED) {
                    return;
                }
                sqHead = (sqHead + 1) % sqOpcode.length;
                sqSize--;
                if (state == State.ERROR && status == Verbs.WC_SUCCESS) {
                    status = Verbs.WC_WR_FLUSH_ERR; // the queue pair failed while this request was executing
                }
                if (status != Verbs.WC_SUCCESS || (flags & Verbs.SEND_SIGNALED) != 0) {
                    cq.add(wrId, status, wcOpcode(op), length);
                }
                if (status != Verbs.WC_SUCCESS && state != State.ERROR) {
                    state = State.ERROR;
                    if (asyncError == null) {
                        asyncError = Verbs.opcodeName(op) + " failed: " + why;
                    }
                    while (rqSize > 0) {
                        cq.add(rqWrId[rqHead], Verbs.WC_WR_FLUSH_ERR, Verbs.WC_RECV, 0);
                        rqHead = (rqHead + 1) % rqWrId.length;
                        rqSize--;
                    }
                }
            } finally {
                lock.unlock();
            }
        }
    }

    private void flushSendQueue() {
        while (sqSize > 0) {
            cq.add(sqWrId[sqHead], Verbs.WC_WR_FLUSH_ERR, wcOpcode(sqOpcode[sqHead]), 0);
            sqHead = (sqHead + 1) % sqOpcode.length;
            sqSize--;
        }
    }

    private int awaitRetryTimeout() {
        long deadline = System.nanoTime() + fabric.retryTimeoutNs();
        lock.lock();
        try {
            // A timer of the simulated hardware, not a wait for a condition of ours.
            long left;
            while ((left = deadline - System.nanoTime()) > 0 && state == State.READY) {
                changed.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            lock.unlock();
        }
        return Verbs.WC_RETRY_EXC_ERR;
    }

    private static int wcOpcode(int op) {
        return switch (op) {
            case Verbs.WR_RDMA_WRITE -> Verbs.WC_RDMA_WRITE;
            case Verbs.WR_RDMA_READ -> Verbs.WC_RDMA_READ;
            default -> Verbs.WC_SEND;
        };
    }

    private record Outcome(int status, String why) {
        static final Outcome OK = new Outcome(Verbs.WC_SUCCESS, null);
    }

    private Outcome execute(int op, long local, int length, int lkey, long remote, int rkey) {
        SimFabric.SimMr localMr = fabric.lkey(lkey);
        int localAccess = op == Verbs.WR_RDMA_READ ? Verbs.ACCESS_LOCAL_WRITE : 0;
        String bad = check(localMr, pd, local, length, localAccess, "lkey");
        if (bad != null) {
            return new Outcome(Verbs.WC_LOC_PROT_ERR, "local buffer 0x" + Long.toHexString(local) + "+" + length + ": " + bad);
        }
        SimQueuePair p = peer();
        if (p == null || !p.isReady()) {
            return new Outcome(Verbs.WC_RETRY_EXC_ERR, "the peer queue pair is gone");
        }
        try {
            switch (op) {
                case Verbs.WR_RDMA_WRITE, Verbs.WR_RDMA_READ -> {
                    boolean write = op == Verbs.WR_RDMA_WRITE;
                    SimFabric.SimMr remoteMr = fabric.rkey(rkey);
                    String rbad = check(remoteMr, p.pd, remote, length, write ? Verbs.ACCESS_REMOTE_WRITE : Verbs.ACCESS_REMOTE_READ, "rkey");
                    if (rbad != null) {
                        String why = "RDMA " + (write ? "WRITE" : "READ") + " of " + length + " bytes at 0x" + Long.toHexString(remote) + " with rkey 0x"
                                + Integer.toHexString(rkey) + " refused: " + rbad;
                        p.toError("remote access violation by the peer: " + why);
                        return new Outcome(Verbs.WC_REM_ACCESS_ERR, why);
                    }
                    if (write) {
                        MemorySegment.copy(localMr.memory, local - localMr.address, remoteMr.memory, remote - remoteMr.address, length);
                        fabric.stats.writeRequests.increment();
                        fabric.stats.writeBytes.add(length);
                    } else {
                        MemorySegment.copy(remoteMr.memory, remote - remoteMr.address, localMr.memory, local - localMr.address, length);
                        fabric.stats.readRequests.increment();
                    }
                    return Outcome.OK;
                }
                default -> {
                    SimFabric.Tap tap = passive ? null : fabric.tapOf(serverPort);
                    if (tap != null) {
                        tap.sent(this, localMr.memory.asSlice(local - localMr.address, length).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
                    }
                    return p.deliver(localMr, local, length, config.rnrRetry());
                }
            }
        } catch (IllegalStateException e) {
            // The owner freed the memory under a live registration (an arena closed too early).
            return new Outcome(Verbs.WC_LOC_PROT_ERR, "memory behind the registration is gone: " + e.getMessage());
        }
    }

    /** Receiver side of a SEND: takes the oldest posted receive and copies the message into it. */
    private Outcome deliver(SimFabric.SimMr src, long srcAddress, int length, int rnrRetry) {
        lock.lock();
        try {
            while (rqSize == 0 && rnrRetry == 7 && state == State.READY) {
                changed.awaitUninterruptibly();
            }
            if (state != State.READY) {
                return new Outcome(Verbs.WC_RETRY_EXC_ERR, "the peer queue pair is " + stateText());
            }
            if (rqSize == 0) {
                return new Outcome(Verbs.WC_RNR_RETRY_EXC_ERR, "the peer had no receive posted on queue pair " + config.name());
            }
            long id = rqWrId[rqHead];
            long address = rqAddress[rqHead];
            int capacity = rqLength[rqHead];
            SimFabric.SimMr dst = fabric.lkey(rqLkey[rqHead]);
            rqHead = (rqHead + 1) % rqWrId.length;
            rqSize--;
            String bad = check(dst, pd, address, Math.min(length, capacity), Verbs.ACCESS_LOCAL_WRITE, "receive lkey");
            if (bad == null && length > capacity) {
                bad = "message of " + length + " bytes is longer than the receive buffer of " + capacity;
                cq.add(id, Verbs.WC_LOC_LEN_ERR, Verbs.WC_RECV, 0);
                failLocked("receive failed: " + bad);
                return new Outcome(Verbs.WC_REM_INV_REQ_ERR, bad);
            }
            if (bad != null) {
                cq.add(id, Verbs.WC_LOC_PROT_ERR, Verbs.WC_RECV, 0);
                failLocked("receive failed: " + bad);
                return new Outcome(Verbs.WC_REM_OP_ERR, "the peer's receive buffer is invalid: " + bad);
            }
            MemorySegment.copy(src.memory, srcAddress - src.address, dst.memory, address - dst.address, length);
            fabric.stats.sendRequests.increment();
            fabric.stats.sendBytes.add(length);
            cq.add(id, Verbs.WC_SUCCESS, Verbs.WC_RECV, length);
            return Outcome.OK;
        } finally {
            lock.unlock();
        }
    }

    private void failLocked(String why) {
        state = State.ERROR;
        if (asyncError == null) {
            asyncError = why;
        }
        while (rqSize > 0) {
            cq.add(rqWrId[rqHead], Verbs.WC_WR_FLUSH_ERR, Verbs.WC_RECV, 0);
            rqHead = (rqHead + 1) % rqWrId.length;
            rqSize--;
        }
        signal();
    }

    /** @return null when {@code mr} may be used for [address, address + length) with {@code access}, else why not */
    private static String check(SimFabric.SimMr mr, SimFabric.SimPd domain, long address, long length, int access, String keyName) {
        if (mr == null || !mr.valid) {
            return keyName + " names no live registration";
        }
        if (mr.pd != domain) {
            return keyName + " belongs to another protection domain";
        }
        if (address < mr.address || length > mr.length || address - mr.address > mr.length - length) {
            return "range 0x" + Long.toHexString(address) + "+" + length + " outside the registration 0x" + Long.toHexString(mr.address) + "+"
                    + mr.length;
        }
        if ((mr.access & access) != access) {
            return "registration grants access 0x" + Integer.toHexString(mr.access) + ", needs 0x" + Integer.toHexString(access);
        }
        return null;
    }

    /** Wakes waiters on {@link #changed} and the engine (lock held). */
    private void signal() {
        changed.signalAll();
        if (engineIdle) {
            LockSupport.unpark(engine);
        }
    }

    @Override
    public String toString() {
        return "SimQueuePair[" + config.name() + (passive ? ", passive" : ", active") + ", port " + serverPort + "]";
    }
}
