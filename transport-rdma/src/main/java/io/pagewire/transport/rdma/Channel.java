package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.CompletionQueue;
import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.QpConfig;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.rdma.verbs.WorkCompletions;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static io.pagewire.transport.spi.wire.Wire.U16;
import static io.pagewire.transport.spi.wire.Wire.U32;

/**
 * One queue pair of a connection with everything it needs: registered receive buffers (the
 * peer's credits), send buffers ({@link Message}), the completion queue and the thread that
 * polls it.
 *
 * <h2>Credits</h2>
 * A SEND needs a receive posted at the peer. Each side posts {@code rxDepth} receive buffers and
 * tells the peer in every envelope how many of the peer's messages it has consumed and posted
 * again (cumulative, modulo 2^32). A side may send while {@code peerRxDepth - (sent - peerAcked)}
 * is at least 2, and use its last credit only for a message that itself returns credits; a side
 * that owes a quarter of its depth sends a credit-only message (an envelope without frames).
 * With every message processed, neither side can end up waiting for the other. The first message
 * each way is not counted: it lands in a separate handshake buffer. Staging slots (regions with
 * a placer) are counted the same way, in the envelope's second word.
 *
 * <h2>Threads</h2>
 * The poller thread owns the completion queue: it releases send buffers in completion order,
 * processes internal messages at once (credits, registrations, round acknowledgements,
 * heartbeats, errors) and dispatches application messages in order, one at a time, to the
 * owner, which may block (back pressure). A thread that waits for credits or buffers while being
 * the poller (a handler that sends) keeps polling; application messages arriving meanwhile are
 * stashed, in order, with their receive buffers, so the stash is bounded by the receive depth.
 * Other threads wait on {@link #changed}. {@link #lock} guards all counters and buffer lists.
 */
final class Channel implements AutoCloseable {
    /** What the connection does with this channel's traffic. */
    interface Owner {
        /** An internal message (no application callback, never blocks for long). */
        void onInternal(Channel ch, MemorySegment buf, long offset, int length);

        /** An application message: callbacks run here and may block. */
        void onApplication(Channel ch, MemorySegment buf, long offset, int length);

        /** A message's SEND completed: its registrations may be released. */
        void onSent(Channel ch, Message m);

        /** Nothing to do for a while (heartbeats, timeouts). */
        void onIdle(Channel ch);

        /** Every completion queued so far has been processed (the poller is about to sleep). */
        void onDrained(Channel ch);

        /** The channel failed. */
        void onFailure(Channel ch, TransportException e);

        /** @return why the connection stopped (failure, close, orderly end), null while it runs */
        TransportException stopCause();
    }

    private static final long RECV_TAG = 1L << 60;
    private static final long SEND_TAG = 2L << 60;
    private static final long TAG_MASK = 0xFL << 60;
    private static final long SLOT_MASK = (1L << 32) - 1;
    private static final long IDLE_POLL_NS = TimeUnit.MILLISECONDS.toNanos(100);
    private static final long PROGRESS_POLL_NS = TimeUnit.MILLISECONDS.toNanos(1);
    private static final long WAIT_SLICE_NS = TimeUnit.MILLISECONDS.toNanos(50);
    private static final long TICK_NS = TimeUnit.MILLISECONDS.toNanos(20);

    final String name;
    final RdmaEndpoint endpoint;
    final QueuePair qp;
    final CompletionQueue cq;
    private final Arena arena = Arena.ofShared();
    private final int rxDepth;
    private final MemorySegment rxArea;
    private final MemoryRegion rxMr;
    private final MemorySegment txArea;
    private final MemoryRegion txMr;
    private final MemoryRegion txStagingMr;
    private final Message[] tx;
    private final int sqDepth;
    private final boolean firstIsHandshake;
    private final Runnable onClose;
    private final int handshakeSlot;
    private Arena handshakeArena;
    private MemorySegment handshakeBuf;
    private MemoryRegion handshakeMr;

    final ReentrantLock lock = new ReentrantLock();
    final Condition changed = lock.newCondition();
    // ---- guarded by lock
    private final int[] freeTx;
    private int freeTxCount;
    private final int[] posted;
    private int postedHead;
    private int postedSize;
    private int sqOutstanding;
    private int peerRxDepth;
    private int peerStagingSlots;
    private int sent;
    private int peerAcked;
    private int reposted;
    private int reportedAcked;
    private int stagedSent;
    private int peerStagingReleased;
    private int stagingReleased;
    private int reportedStaging;
    /** Handshake messages this side may still send uncounted, into the peer's handshake buffer (1; 2 when authenticating). */
    private int handshakeSendsLeft = 1;
    private boolean firstReceived;
    /** Another handshake message is due in a regular receive buffer ({@link #rearmHandshake}). */
    private boolean expectHandshake;
    /** Regular receive buffers that held a handshake message, posted again (uncounted) by {@link #setPeer}. */
    private final int[] handshakeSlotsTaken = new int[2];
    private int handshakeSlotsTakenCount;
    private int handshakeLength = -1;
    private boolean stopped;
    // ---- poller thread only
    private final WorkCompletions wc = new WorkCompletions(64);
    private int wcNext;
    /** Credit-only messages posted (for {@link RdmaWork}). */
    final java.util.concurrent.atomic.LongAdder creditMessages = new java.util.concurrent.atomic.LongAdder();
    private volatile boolean broken;
    private final int[] stashSlot;
    private final int[] stashLength;
    private int stashHead;
    private int stashSize;
    private final FrameHeader peek;

    private volatile Owner owner;
    private volatile LaneKind lane;
    private volatile Thread poller;
    private volatile boolean closed;
    private volatile long idleWaitNs = IDLE_POLL_NS;
    /** False once the poller loop has ended: a waiter then polls itself (a failing side waiting for its ERROR to leave). */
    private volatile boolean polling = true;

    /**
     * Creates the queue pair with its buffers and posts the receives (before connect or accept).
     *
     * @param firstIsHandshake whether the first message is picked up by {@link #awaitHandshake} (else processed as usual)
     * @param txStagingBytes per send buffer, for data digests (0 = none)
     * @param onClose run once everything is deregistered (also when construction fails), or null
     */
    Channel(String name, RdmaEndpoint endpoint, ProtectionDomain pd, int rxDepth, int txSlots, boolean firstIsHandshake,
            int txStagingBytes, Runnable onClose) throws VerbsException {
        this.name = name;
        this.onClose = onClose;
        this.endpoint = endpoint;
        this.rxDepth = rxDepth;
        this.firstIsHandshake = firstIsHandshake;
        this.handshakeSlot = rxDepth;
        this.sqDepth = Protocol.MAX_WRS * Math.max(4, Math.min(txSlots, 16));
        boolean ok = false;
        MemoryRegion rx = null;
        MemoryRegion txr = null;
        MemoryRegion stg = null;
        CompletionQueue q = null;
        try {
            q = endpoint.device().createCq(sqDepth + rxDepth + 2);
            this.cq = q;
            this.qp = endpoint.createQueuePair(pd, q, new QpConfig(name, sqDepth, rxDepth + 1, 0));
            rxArea = arena.allocate((long) rxDepth * Protocol.RX_BYTES, 4096);
            rx = pd.register(rxArea, Verbs.ACCESS_LOCAL_WRITE);
            txArea = arena.allocate((long) txSlots * Protocol.RX_BYTES, 4096);
            txr = pd.register(txArea, 0);
            MemorySegment stagingArea = null;
            if (txStagingBytes > 0) {
                stagingArea = arena.allocate((long) txSlots * txStagingBytes, 4096);
                stg = pd.register(stagingArea, 0);
            }
            rxMr = rx;
            txMr = txr;
            txStagingMr = stg;
            tx = new Message[txSlots];
            freeTx = new int[txSlots];
            posted = new int[txSlots];
            for (int i = 0; i < txSlots; i++) {
                MemorySegment stagingSlice = stagingArea == null ? null : stagingArea.asSlice((long) i * txStagingBytes, txStagingBytes);
                tx[i] = new Message(i, txArea.asSlice((long) i * Protocol.RX_BYTES, Protocol.RX_BYTES), arena, stagingSlice);
                if (stg != null) {
                    tx[i].txStagingLkey = stg.lkey();
                }
                freeTx[i] = txSlots - 1 - i;
            }
            freeTxCount = txSlots;
            stashSlot = new int[rxDepth + 1];
            stashLength = new int[rxDepth + 1];
            peek = new FrameHeader(arena);
            handshakeArena = Arena.ofShared();
            int hsBytes = Protocol.RX_BYTES;
            handshakeBuf = handshakeArena.allocate(hsBytes, 4096);
            handshakeMr = pd.register(handshakeBuf, Verbs.ACCESS_LOCAL_WRITE);
            qp.postRecv(RECV_TAG | handshakeSlot, handshakeBuf.address(), hsBytes, handshakeMr.lkey());
            for (int i = 0; i < rxDepth; i++) {
                postRx(i);
            }
            ok = true;
        } finally {
            if (!ok) {
                endpoint.close();
                deregister(rx, txr, stg, handshakeMr);
                if (q != null) {
                    q.close();
                }
                arena.close();
                if (handshakeArena != null) {
                    handshakeArena.close();
                }
                if (onClose != null) {
                    onClose.run();
                }
            }
        }
    }

    private static void deregister(MemoryRegion... mrs) {
        for (MemoryRegion m : mrs) {
            if (m != null) {
                m.deregister();
            }
        }
    }

    private void postRx(int slot) throws VerbsException {
        qp.postRecv(RECV_TAG | slot, rxArea.address() + (long) slot * Protocol.RX_BYTES, Protocol.RX_BYTES, rxMr.lkey());
    }

    /** Sets who handles this channel's traffic and which lane it is. */
    void bind(Owner o, LaneKind l) {
        this.owner = o;
        this.lane = l;
    }

    LaneKind lane() {
        return lane;
    }

    int rxDepth() {
        return rxDepth;
    }

    /** Handshake complete: the peer's receive depth and staging slots are known. */
    void setPeer(int depth, int stagingSlots) {
        lock.lock();
        try {
            for (int i = 0; i < handshakeSlotsTakenCount; i++) {
                try {
                    postRx(handshakeSlotsTaken[i]);
                } catch (VerbsException e) {
                    fail(new TransportException(Kind.CONNECTION_LOST, "posting a receive buffer on the " + name + " queue pair to "
                            + endpoint.peerAddress() + " failed: " + e.getMessage(), e));
                }
            }
            handshakeSlotsTakenCount = 0;
            peerRxDepth = depth;
            peerStagingSlots = stagingSlots;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    // ================================================================== handshake

    /**
     * Polls (on the calling thread, before the poller starts) until the first message arrives.
     *
     * @return the message, valid until {@link #releaseHandshake()}; null on timeout
     */
    MemorySegment awaitHandshake(long deadlineNs) throws VerbsException {
        while (true) {
            lock.lock();
            try {
                if (handshakeLength >= 0) {
                    return handshakeBuf.asSlice(0, handshakeLength);
                }
            } finally {
                lock.unlock();
            }
            TransportException f = ownerFailure();
            if (f != null) {
                throw new VerbsException(f.getMessage(), f);
            }
            long left = deadlineNs - System.nanoTime();
            if (left <= 0) {
                return null;
            }
            if (pollOnce() == 0) {
                cq.requestNotify();
                if (pollOnce() == 0) {
                    cq.awaitEvent(Math.min(left, IDLE_POLL_NS));
                }
            }
        }
    }

    /**
     * Lets this side send {@code n} handshake messages uncounted (the authentication exchange sends two
     * each way on the urgent queue pair); call before the first post.
     */
    void handshakeMessages(int n) {
        lock.lock();
        try {
            handshakeSendsLeft = n;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Expects one more handshake message (the authentication exchange), once the last one was read. A
     * receive queue is first in, first out, so it lands in a regular receive buffer: it is copied into the
     * handshake buffer and that receive buffer posted again without counting it (the peer sent it
     * uncounted, see {@link #handshakeMessages}). The peer sends it only after this side's next message.
     */
    void rearmHandshake() throws VerbsException {
        lock.lock();
        try {
            if (handshakeMr == null) {
                throw new VerbsException("the handshake buffer of the " + name + " queue pair is already released");
            }
            if (handshakeSlotsTakenCount + (expectHandshake ? 1 : 0) >= handshakeSlotsTaken.length) {
                throw new VerbsException("more than " + handshakeSlotsTaken.length + " further handshake messages on the " + name + " queue pair");
            }
            handshakeLength = -1;
            expectHandshake = true;
        } finally {
            lock.unlock();
        }
    }

    /** Frees the handshake buffer once its message has been read (it is never posted again). */
    void releaseHandshake() {
        lock.lock();
        try {
            if (handshakeMr != null && (handshakeLength >= 0 || closed)) {
                handshakeMr.deregister();
                handshakeMr = null;
                handshakeArena.close();
                handshakeArena = null;
                handshakeBuf = null;
            }
        } finally {
            lock.unlock();
        }
    }

    /** Waits until every posted message has completed (used to deliver a refusal before closing). */
    boolean awaitAllSent(long deadlineNs) throws VerbsException {
        while (true) {
            lock.lock();
            try {
                if (postedSize == 0) {
                    return true;
                }
            } finally {
                lock.unlock();
            }
            long left = deadlineNs - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            if (Thread.currentThread() == poller || poller == null || !polling) {
                if (pollOnce() == 0) {
                    cq.requestNotify();
                    if (pollOnce() == 0) {
                        cq.awaitEvent(Math.min(left, PROGRESS_POLL_NS * 10));
                    }
                }
            } else {
                lock.lock();
                try {
                    if (postedSize > 0) {
                        changed.awaitNanos(Math.min(left, WAIT_SLICE_NS));
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new VerbsException("interrupted", e);
                } finally {
                    lock.unlock();
                }
            }
        }
    }

    // ================================================================== sending

    /** Takes a send buffer, waiting while all are in flight. */
    Message begin() {
        lock.lock();
        try {
            while (freeTxCount == 0) {
                waitStep(lock, changed);
            }
            Message m = tx[freeTx[--freeTxCount]];
            m.reset();
            return m;
        } finally {
            lock.unlock();
        }
    }

    /** @return a send buffer, or null when all are in flight (never waits) */
    Message tryBegin() {
        lock.lock();
        try {
            if (freeTxCount == 0) {
                return null;
            }
            Message m = tx[freeTx[--freeTxCount]];
            m.reset();
            return m;
        } finally {
            lock.unlock();
        }
    }

    /** Posts if credits allow right now; otherwise gives the buffer back. @return true when posted */
    boolean tryPost(Message m) {
        lock.lock();
        try {
            if (stopped || !canPost(m)) {
                freeTx[freeTxCount++] = m.slot;
                return false;
            }
            postLocked(m);
            return true;
        } catch (VerbsException e) {
            freeTx[freeTxCount++] = m.slot;
            return false;
        } finally {
            lock.unlock();
        }
    }

    /** Gives back a send buffer that will not be posted. */
    void abandon(Message m) {
        lock.lock();
        try {
            freeTx[freeTxCount++] = m.slot;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** @return the staging slot the next staged message will use; waits until the peer has one free */
    int awaitStagingSlot() {
        lock.lock();
        try {
            while (peerStagingSlots == 0 || stagedSent - peerStagingReleased >= peerStagingSlots) {
                if (peerStagingSlots == 0) {
                    throw new IllegalStateException("the peer has no staging slots");
                }
                waitStep(lock, changed);
            }
            return Integer.remainderUnsigned(stagedSent, peerStagingSlots);
        } finally {
            lock.unlock();
        }
    }

    private boolean canPost(Message m) {
        if (sqOutstanding + m.batch.count() + 1 > sqDepth) {
            return false;
        }
        if (m.staged && stagedSent - peerStagingReleased >= peerStagingSlots) {
            return false;
        }
        if (handshakeSendsLeft > 0) {
            return true;
        }
        if (peerRxDepth == 0) {
            return false; // handshake not complete: only the first message may go
        }
        int credits = peerRxDepth - (sent - peerAcked);
        return credits >= 2 || (credits == 1 && (reposted != reportedAcked || stagingReleased != reportedStaging));
    }

    /** Posts a built message: its RDMA WRITEs, then its SEND, in one call. Waits for credits. */
    void post(Message m) {
        lock.lock();
        try {
            while (!canPost(m)) {
                waitStep(lock, changed);
            }
            postLocked(m);
        } catch (VerbsException e) {
            TransportException t = new TransportException(Kind.CONNECTION_LOST, "posting on the " + name + " queue pair to "
                    + endpoint.peerAddress() + " failed: " + e.getMessage(), e);
            fail(t);
            throw copy(t);
        } finally {
            lock.unlock();
        }
    }

    private void postLocked(Message m) throws VerbsException {
        m.buf.set(U32, 0, reposted);
        m.buf.set(U32, 4, stagingReleased);
        m.batch.send(SEND_TAG | m.slot, Verbs.SEND_SIGNALED, m.address, m.length, txMr.lkey());
        qp.postSend(m.batch);
        m.wrCount = m.batch.count();
        sqOutstanding += m.wrCount;
        posted[(postedHead + postedSize) % posted.length] = m.slot;
        postedSize++;
        reportedAcked = reposted;
        reportedStaging = stagingReleased;
        if (handshakeSendsLeft > 0) {
            handshakeSendsLeft--; // lands in the peer's handshake buffer: not counted against its receive credits
        } else {
            sent++;
        }
        if (m.staged) {
            stagedSent++;
        }
    }

    /** Sends a credit-only message if the peer is owed enough and it can go without waiting. */
    void maybeReturnCredits() {
        lock.lock();
        try {
            if (peerRxDepth == 0 || stopped || freeTxCount == 0) {
                return;
            }
            int owed = reposted - reportedAcked;
            int stagingOwed = stagingReleased - reportedStaging;
            if (owed < Math.max(1, rxDepth / 4) && stagingOwed < 2) {
                return;
            }
            Message m = tx[freeTx[freeTxCount - 1]];
            m.reset();
            if (!canPost(m)) {
                return;
            }
            freeTxCount--;
            postLocked(m);
            creditMessages.increment();
        } catch (VerbsException e) {
            fail(new TransportException(Kind.CONNECTION_LOST, "returning credits on the " + name + " queue pair failed: " + e.getMessage(), e));
        } finally {
            lock.unlock();
        }
    }

    /** Waits until every message posted so far has completed (all RDMA WRITEs have read their source memory). */
    void awaitQuiet() {
        lock.lock();
        try {
            while (postedSize > 0) {
                waitStep(lock, changed);
            }
        } finally {
            lock.unlock();
        }
    }

    /** The peer's staging slot of the message just dispatched is free again. */
    void stagingSlotReleased() {
        lock.lock();
        try {
            stagingReleased++;
        } finally {
            lock.unlock();
        }
    }

    /**
     * One wait step with {@code l} held: the poller thread makes progress on its completion queue
     * (a handler sending from within a callback), any other thread waits on {@code c}.
     *
     * @throws TransportException when the connection has failed or closed
     */
    void waitStep(ReentrantLock l, Condition c) {
        throwIfFailed();
        if (Thread.currentThread() == poller) {
            l.unlock();
            try {
                progress();
            } catch (VerbsException e) {
                fail(new TransportException(Kind.CONNECTION_LOST, "polling the " + name + " queue pair failed: " + e.getMessage(), e));
            } finally {
                l.lock();
            }
        } else {
            try {
                c.awaitNanos(WAIT_SLICE_NS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new TransportException(Kind.CLOSED, "interrupted while waiting on the " + name + " queue pair", e);
            }
        }
        throwIfFailed();
    }

    /**
     * Takes {@code l}; the poller thread keeps polling while another thread holds it (that thread
     * may be waiting for credits only this poller can bring in).
     */
    void lockWithProgress(ReentrantLock l) {
        if (Thread.currentThread() != poller) {
            l.lock();
            return;
        }
        while (!l.tryLock()) {
            throwIfFailed();
            try {
                progress();
            } catch (VerbsException e) {
                fail(new TransportException(Kind.CONNECTION_LOST, "polling the " + name + " queue pair failed: " + e.getMessage(), e));
            }
        }
    }

    private void throwIfFailed() {
        TransportException f = ownerFailure();
        if (f != null) {
            throw copy(f);
        }
    }

    private TransportException ownerFailure() {
        Owner o = owner;
        if (o != null) {
            return o.stopCause();
        }
        return closed ? new TransportException(Kind.CLOSED, "queue pair " + name + " closed") : null;
    }

    static TransportException copy(TransportException f) {
        return new TransportException(f.kind(), f.getMessage(), f);
    }

    private void fail(TransportException e) {
        broken = true;
        Owner o = owner;
        if (o != null) {
            o.onFailure(this, e);
        }
        wake();
    }

    // ================================================================== polling

    /** @param ns longest the poller sleeps when idle (heartbeat checks need a tick) */
    void idleWaitNs(long ns) {
        this.idleWaitNs = Math.max(TimeUnit.MILLISECONDS.toNanos(1), Math.min(IDLE_POLL_NS, ns));
    }

    /** Runs the poller loop on the calling thread (the connection's poller thread) until the channel stops or fails. */
    void runPoller() {
        poller = Thread.currentThread();
        try {
            pollLoop();
        } finally {
            polling = false;
        }
    }

    private void pollLoop() {
        long lastTick = System.nanoTime();
        try {
            while (!stopped && !broken && ownerFailure() == null) {
                long now = System.nanoTime();
                if (now - lastTick > TICK_NS) {
                    lastTick = now;
                    owner.onIdle(this); // heartbeats and timeouts also while busy
                }
                if (stashSize > 0) {
                    dispatchStashed();
                    continue;
                }
                if (pollOnce() > 0) {
                    continue;
                }
                lastTick = System.nanoTime();
                owner.onDrained(this);
                owner.onIdle(this);
                maybeReturnCredits();
                cq.requestNotify();
                if (pollOnce() > 0) {
                    continue;
                }
                cq.awaitEvent(idleWaitNs);
            }
        } catch (VerbsException e) {
            fail(new TransportException(Kind.CONNECTION_LOST, "polling the " + name + " queue pair to " + endpoint.peerAddress() + " failed: "
                    + e.getMessage(), e));
        } catch (TransportException e) {
            fail(e);
        } catch (RuntimeException e) {
            fail(new TransportException(Kind.HANDLER_FAILED, "the " + name + " queue pair's thread failed: " + e, e));
        }
    }

    /** From a waiting poller: one round of completions, or a short wait for one. */
    private void progress() throws VerbsException {
        if (pollOnce() == 0) {
            cq.requestNotify();
            if (pollOnce() == 0) {
                cq.awaitEvent(PROGRESS_POLL_NS);
            }
        }
    }

    private void dispatchStashed() throws VerbsException {
        int slot = stashSlot[stashHead];
        int len = stashLength[stashHead];
        stashHead = (stashHead + 1) % stashSlot.length;
        stashSize--;
        owner.onApplication(this, rxArea, (long) slot * Protocol.RX_BYTES, len);
        repost(slot);
        maybeReturnCredits();
    }

    private void repost(int slot) throws VerbsException {
        if (stopped || ownerFailure() != null) {
            return;
        }
        postRx(slot);
        lock.lock();
        try {
            reposted++;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Processes the completions of one poll. The batch is resumable: when processing one throws
     * (a protocol violation), the rest stay in {@link #wc} for the next call, so no completion is
     * ever lost; once the channel is broken, receives are dropped and only send completions are
     * still accounted for (a failing side waits for its ERROR to leave).
     */
    private int pollOnce() throws VerbsException {
        if (wcNext >= wc.count()) {
            wcNext = 0;
            if (cq.poll(wc) == 0) {
                return 0;
            }
        }
        int n = 0;
        while (wcNext < wc.count()) {
            int i = wcNext++;
            n++;
            long id = wc.wrId(i);
            int status = wc.status(i);
            long tag = id & TAG_MASK;
            int slot = (int) (id & SLOT_MASK);
            if (tag == SEND_TAG) {
                onSendCompletion(slot, status);
            } else if (broken) {
                continue; // failing: nothing more is received or reported
            } else if (tag == RECV_TAG) {
                onReceive(slot, status, wc.byteLength(i));
            } else {
                // RDMA WRITEs are unsignalled: a completion means they failed (or were flushed).
                onWorkError("RDMA WRITE", status);
            }
            if (ownerFailure() != null && !broken) {
                broken = true;
            }
        }
        return n;
    }

    private void onWorkError(String what, int status) {
        String async = qp.asyncError();
        Kind kind = Kind.CONNECTION_LOST;
        fail(new TransportException(kind, what + " on the " + name + " queue pair to " + endpoint.peerAddress() + " failed: "
                + Verbs.statusName(status) + (async == null ? "" : "; " + async)));
    }

    private void onSendCompletion(int slot, int status) {
        if (status != Verbs.WC_SUCCESS && !broken) {
            onWorkError("SEND", status);
        }
        Message m;
        lock.lock();
        try {
            if (postedSize == 0 || posted[postedHead] != slot) {
                if (broken) {
                    return; // flushed out of the order we expect while failing: nothing to account for any more
                }
                throw new IllegalStateException("send completion for buffer " + slot + " out of order on the " + name + " queue pair (expected "
                        + (postedSize == 0 ? "none" : posted[postedHead]) + ")");
            }
            postedHead = (postedHead + 1) % posted.length;
            postedSize--;
            m = tx[slot];
            sqOutstanding -= m.wrCount;
        } finally {
            lock.unlock();
        }
        Owner o = owner;
        if (o != null) {
            o.onSent(this, m);
        }
        lock.lock();
        try {
            freeTx[freeTxCount++] = slot;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void onReceive(int slot, int status, int length) throws VerbsException {
        if (status != Verbs.WC_SUCCESS) {
            String async = qp.asyncError();
            Kind kind = Kind.CONNECTION_LOST;
            if (async != null && async.startsWith("remote access violation")) {
                kind = Kind.PROTOCOL;
            }
            fail(new TransportException(kind, "the " + name + " queue pair to " + endpoint.peerAddress() + " failed: "
                    + (async != null ? async : Verbs.statusName(status))));
            return;
        }
        MemorySegment buf;
        long off;
        boolean first = slot == handshakeSlot;
        if (first) {
            buf = handshakeBuf;
            off = 0;
        } else {
            buf = rxArea;
            off = (long) slot * Protocol.RX_BYTES;
        }
        if (length < Protocol.ENVELOPE) {
            throw new WireException("a message of " + length + " bytes on the " + name + " queue pair is shorter than its " + Protocol.ENVELOPE
                    + "-byte envelope");
        }
        if (first && firstIsHandshake) {
            lock.lock();
            try {
                firstReceived = true;
                handshakeLength = length;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
            return;
        }
        if (!first && !firstReceived) {
            throw new WireException("message in a regular receive buffer before the handshake on the " + name + " queue pair");
        }
        if (!first && owner == null && takeHandshake(buf, off, length)) {
            return; // its buffer is posted again when the handshake completes (setPeer): a refused peer may be gone already
        }
        firstReceived = true;
        if (owner == null) {
            throw new WireException("a message arrived on the " + name + " queue pair before the handshake completed");
        }
        credits(buf.get(U32, off), buf.get(U32, off + 4));
        if (length == Protocol.ENVELOPE) {
            if (!first) {
                repost(slot);
            }
            return;
        }
        int type = Short.toUnsignedInt(buf.get(U16, off + Protocol.ENVELOPE));
        if (Protocol.isInternal(type)) {
            owner.onInternal(this, buf, off, length);
            if (!first) {
                repost(slot);
            }
            return;
        }
        if (first) {
            // The first message lands in the handshake buffer, which is not reposted: dispatch it now.
            owner.onApplication(this, buf, off, length);
            return;
        }
        stashSlot[(stashHead + stashSize) % stashSlot.length] = slot;
        stashLength[(stashHead + stashSize) % stashSlot.length] = length;
        stashSize++;
    }

    /** @return whether a further handshake message was due; if so it is copied into the handshake buffer */
    private boolean takeHandshake(MemorySegment buf, long off, int length) {
        lock.lock();
        try {
            if (!expectHandshake || handshakeBuf == null) {
                return false;
            }
            expectHandshake = false;
            handshakeSlotsTaken[handshakeSlotsTakenCount++] = (int) (off / Protocol.RX_BYTES);
            MemorySegment.copy(buf, off, handshakeBuf, 0, length);
            handshakeLength = length;
            changed.signalAll();
            return true;
        } finally {
            lock.unlock();
        }
    }

    /** Applies the envelope's credit returns, checking them against what was sent. */
    private void credits(int acked, int stagingAck) {
        lock.lock();
        try {
            if (Integer.compareUnsigned(acked - peerAcked, sent - peerAcked) > 0) {
                throw new WireException("the peer acknowledges " + Integer.toUnsignedString(acked) + " messages on the " + name
                        + " queue pair, but only " + Integer.toUnsignedString(sent) + " were sent");
            }
            if (Integer.compareUnsigned(stagingAck - peerStagingReleased, stagedSent - peerStagingReleased) > 0) {
                throw new WireException("the peer releases " + Integer.toUnsignedString(stagingAck) + " staging slots on the " + name
                        + " queue pair, but only " + Integer.toUnsignedString(stagedSent) + " were used");
            }
            if (acked != peerAcked || stagingAck != peerStagingReleased) {
                peerAcked = acked;
                peerStagingReleased = stagingAck;
                changed.signalAll();
            }
        } finally {
            lock.unlock();
        }
    }

    /** Decodes the frame header at {@code offset} into a reusable flyweight (poller thread). */
    FrameHeader header(MemorySegment buf, long offset) {
        MemorySegment.copy(buf, offset, peek.segment(), 0, FrameHeader.LENGTH);
        return peek.decode();
    }

    /** Wakes every waiter (failure, close). */
    void wake() {
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        cq.wakeup();
    }

    /** Stops the poller loop at its next turn (after a clean completion). */
    void stop() {
        lock.lock();
        try {
            stopped = true;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        cq.wakeup();
    }

    /** Disconnects the queue pair: both ends flush (used on failure). */
    void disconnect() {
        endpoint.disconnect();
        wake();
    }

    /** Joins the poller (unless called from it) and frees everything. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        stop();
        endpoint.disconnect();
        Thread t = poller;
        if (t != null && t != Thread.currentThread()) {
            try {
                t.join(TimeUnit.SECONDS.toMillis(10));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        endpoint.close(); // destroys the queue pair: no more DMA into our buffers
        cq.close();
        lock.lock();
        try {
            rxMr.deregister();
            txMr.deregister();
            if (txStagingMr != null) {
                txStagingMr.deregister();
            }
            if (handshakeMr != null) {
                handshakeMr.deregister();
                handshakeMr = null;
                handshakeArena.close();
                handshakeArena = null;
            }
        } finally {
            lock.unlock();
        }
        if (t == null || t == Thread.currentThread() || !t.isAlive()) {
            arena.close();
        }
        // else: the poller is stuck in an application callback; its buffers stay until the JVM frees the arena's memory at exit.
        if (onClose != null) {
            onClose.run();
        }
    }

    @Override
    public String toString() {
        return "Channel[" + name + ", " + endpoint.peerAddress() + "]";
    }
}
