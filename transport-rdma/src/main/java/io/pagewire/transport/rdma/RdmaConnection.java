package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.ConnectionStats;
import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.FrameValidator;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

import static io.pagewire.transport.spi.wire.Wire.U32;

/**
 * One pagewire connection over RDMA: an urgent and a background queue pair, each with its own
 * completion queue and poller thread; on the source a sender thread feeds the background queue
 * pair from a bounded queue of page descriptors.
 *
 * <h2>Data path</h2>
 * The source packs consecutive background entries into one message of at most {@code batch-bytes}
 * of pages: for each page run an RDMA WRITE per registration unit it crosses, straight from guest
 * RAM into destination RAM (or the destination's staging slot for regions with a placer), then
 * one SEND whose frames say what landed. The destination checks every frame against the layout
 * before it reports anything; RC ordering guarantees the pages are in memory when the SEND
 * arrives. Zero and skip runs are frames without writes.
 *
 * <h2>Failure</h2>
 * The first failure wins: it is recorded, the peer is told with an ERROR on the urgent queue pair
 * when it is still reachable, both queue pairs are disconnected (every outstanding work request
 * at both ends is flushed, waking every poller), every waiter is woken, and the handler's
 * {@code onError} runs once. After a completed migration, a disconnect is not an error.
 */
final class RdmaConnection implements Connection, Channel.Owner {
    private static final long ERROR_DELIVERY_NS = TimeUnit.MILLISECONDS.toNanos(500);

    private final Role role;
    private final String peer;
    private final RamLayout layout;
    private final MessageHandler handler;
    private final ConnectionStats stats;
    private final Set<Capability> capabilities;
    private final long heartbeatNs;
    private final long peerTimeoutNs;
    private final int batchBytes;
    private final boolean dataDigest;
    private final FrameValidator validator;
    final Channel urgent;
    final Channel background;
    private final Runnable releaseDomain;
    // source side
    final LocalRam localRam;
    final RemoteRam remoteRam;
    private final SourceQueue queue;
    private Thread sender;
    private long bgPagesSent;        // sender thread only
    private final int maxWrites;
    // destination side
    final DestinationRam dstRam;
    private final Rx bgRx;
    private final Rx urgentRx;

    private final AtomicReference<TransportException> failure = new AtomicReference<>();
    private final AtomicBoolean failing = new AtomicBoolean();
    private final AtomicReference<TransportException> backgroundLost = new AtomicReference<>();
    private final java.util.concurrent.CountDownLatch failed = new java.util.concurrent.CountDownLatch(1);
    private static final long URGENT_VERDICT_NS = TimeUnit.MILLISECONDS.toNanos(200);
    private final AtomicBoolean closed = new AtomicBoolean();
    private volatile boolean completed;
    private volatile long lastReceivedNs = System.nanoTime();
    private volatile long lastSentNs = System.nanoTime();
    private final ReentrantLock urgentLaneLock = new ReentrantLock();
    private final CRC32C urgentCrc = new CRC32C();
    // round-end acknowledgement (source)
    private final ReentrantLock roundLock = new ReentrantLock();
    private final Condition roundChanged = roundLock.newCondition();
    private boolean roundPending;
    private long awaitedRound;

    private final Lane backgroundLane;
    private final Lane urgentLane;
    private final java.util.concurrent.atomic.LongAdder copiedPageBytes = new java.util.concurrent.atomic.LongAdder();
    private final java.util.concurrent.atomic.LongAdder messagesPosted = new java.util.concurrent.atomic.LongAdder();
    private final java.util.concurrent.atomic.LongAdder pageMessages = new java.util.concurrent.atomic.LongAdder();
    private final java.util.concurrent.atomic.LongAdder framesBuilt = new java.util.concurrent.atomic.LongAdder();

    /** Per-channel receive state, confined to that channel's poller thread. */
    private static final class Rx {
        final CRC32C crc = new CRC32C();
        final int[] rkeys = new int[Protocol.MAX_REGISTER_CHUNKS];
        int stagingNext;
        int stagingSlot;
        long stagedOffset;
        long pagesReceived;
        boolean complete;
    }

    RdmaConnection(Role role, String peer, RamLayout layout, RdmaOptions options, int batchBytes, boolean dataDigest, MessageHandler handler,
                   long heartbeatNs, long peerTimeoutNs, Channel urgent, Channel background, Runnable releaseDomain,
                   LocalRam localRam, RemoteRam remoteRam, DestinationRam dstRam) {
        this.role = role;
        this.peer = peer;
        this.layout = layout;
        this.handler = handler == null ? new MessageHandler() { } : handler;
        this.heartbeatNs = heartbeatNs;
        this.peerTimeoutNs = peerTimeoutNs;
        this.batchBytes = batchBytes;
        this.dataDigest = dataDigest;
        this.validator = new FrameValidator(layout.descriptors(), batchBytes, dataDigest);
        this.urgent = urgent;
        this.background = background;
        this.releaseDomain = releaseDomain;
        this.localRam = localRam;
        this.remoteRam = remoteRam;
        this.dstRam = dstRam;
        // Pending page data: the queue, the entry the sender carries over, the message it is building.
        this.stats = new ConnectionStats((long) (options.queueDepth() + 2) * batchBytes);
        this.capabilities = capabilities(dataDigest);
        if (role == Role.SOURCE) {
            this.queue = new SourceQueue(options.queueDepth(), stats, failure::get);
            // A message under construction pins the chunks it writes through; the background and the
            // urgent lane together must never pin a whole cache, or neither could make room.
            int w = Protocol.MAX_WRS - 1;
            if (!options.pinAll()) {
                w = Math.min(w, options.cacheChunks() / 4);
            }
            if (remoteRam.hasOnDemandRegions()) {
                w = Math.min(w, remoteRam.cacheChunks() / 4);
            }
            this.maxWrites = Math.max(1, w);
            this.backgroundLane = new SourceBackgroundLane();
            this.bgRx = null;
            this.urgentRx = null;
        } else {
            this.queue = null;
            this.maxWrites = 0;
            this.backgroundLane = new io.pagewire.transport.spi.DestinationBackgroundLane(this::ensureOpen);
            this.bgRx = new Rx();
            this.urgentRx = new Rx();
        }
        this.urgentLane = new UrgentLane();
    }

    static Set<Capability> capabilities(boolean dataDigest) {
        return dataDigest
                ? Set.of(Capability.ONE_SIDED_PLACEMENT, Capability.MEMORY_REGISTRATION, Capability.SEPARATE_URGENT_PATH, Capability.ZERO_COPY_RECEIVE,
                Capability.DATA_DIGEST)
                : Set.of(Capability.ONE_SIDED_PLACEMENT, Capability.MEMORY_REGISTRATION, Capability.SEPARATE_URGENT_PATH, Capability.ZERO_COPY_RECEIVE,
                Capability.ZERO_COPY_SEND);
    }

    /** Starts the threads; the handshake is done. */
    void start() {
        String side = role == Role.SOURCE ? "src" : "dst";
        urgent.bind(this, LaneKind.URGENT);
        background.bind(this, LaneKind.BACKGROUND);
        urgent.idleWaitNs(heartbeatNs / 2);
        if (remoteRam != null) {
            remoteRam.registrar(urgent);
        }
        urgent.start(Thread.ofPlatform().daemon().name("pagewire-rdma-" + side + "-urgent"));
        background.start(Thread.ofPlatform().daemon().name("pagewire-rdma-" + side + "-bg"));
        if (role == Role.SOURCE) {
            sender = Thread.ofPlatform().daemon().name("pagewire-rdma-src-sender").start(this::senderLoop);
        }
    }

    // ================================================================== Connection

    @Override
    public Role role() {
        return role;
    }

    @Override
    public String peer() {
        return peer;
    }

    @Override
    public RamLayout layout() {
        return layout;
    }

    @Override
    public Set<Capability> capabilities() {
        return capabilities;
    }

    @Override
    public Lane background() {
        return backgroundLane;
    }

    @Override
    public Lane urgent() {
        return urgentLane;
    }

    @Override
    public ConnectionStats stats() {
        return stats;
    }

    @Override
    public TransportException failure() {
        TransportException f = failure.get();
        if (f != null) {
            return f;
        }
        return closed.get() ? new TransportException(Kind.CLOSED, "connection closed") : null;
    }

    @Override
    public boolean isClosed() {
        return closed.get() || failure.get() != null;
    }

    @Override
    public void abort(String reason) {
        fail(new TransportException(Kind.CLOSED, "aborted by the " + side() + ": " + reason), true, false);
        close();
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        if (!completed) {
            failNow(new TransportException(Kind.CLOSED, "the " + side() + " closed the connection before the migration completed"), true, false);
        } else {
            urgent.stop();
            background.stop();
            urgent.disconnect();
            background.disconnect();
        }
        if (queue != null) {
            queue.close();
        }
        if (remoteRam != null) {
            remoteRam.wake();
        }
        Thread s = sender;
        if (s != null && s != Thread.currentThread()) {
            s.interrupt();
            try {
                s.join(TimeUnit.SECONDS.toMillis(10));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        urgent.close();
        background.close();
        if (localRam != null) {
            localRam.close();
        }
        if (dstRam != null) {
            dstRam.close();
        }
        if (releaseDomain != null) {
            releaseDomain.run();
        }
    }

    private String side() {
        return role == Role.SOURCE ? "source" : "destination";
    }

    private String otherSide() {
        return role == Role.SOURCE ? "destination" : "source";
    }

    // ================================================================== failure

    @Override
    public void onFailure(Channel ch, TransportException e) {
        if (closed.get()) {
            return; // our own close disconnected the queue pairs
        }
        if (completed) {
            // After completion the peer may close whenever it likes: an orderly end, not an error.
            fail(new TransportException(Kind.CLOSED, "the " + otherSide() + " " + peer + " closed the connection after the migration completed", e),
                    false, false);
            return;
        }
        if (ch == background && e.kind() == Kind.CONNECTION_LOST && failure.get() == null) {
            // A peer that fails tells us why on the urgent queue pair, then disconnects both: the background
            // flush may be seen first. Let the urgent poller drain what has arrived (the ERROR) and decide;
            // fall back to this failure if it cannot (gone, or stuck in a callback).
            backgroundLost.compareAndSet(null, e);
            urgent.wake();
            try {
                failed.await(URGENT_VERDICT_NS, TimeUnit.NANOSECONDS);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
        }
        fail(e, e.kind() != Kind.PEER_ERROR, true);
    }

    @Override
    public void onDrained(Channel ch) {
        TransportException lost = backgroundLost.get();
        if (ch == urgent && lost != null && failure.get() == null) {
            fail(lost, true, true);
        }
    }

    /** Fails once; a local close or abort while healthy always wins over what its disconnect causes. */
    void fail(TransportException cause, boolean tellPeer, boolean notifyHandler) {
        if (closed.get() && !failing.get()) {
            return;
        }
        failNow(cause, tellPeer, notifyHandler);
    }

    private void failNow(TransportException cause, boolean tellPeer, boolean notifyHandler) {
        if (!failing.compareAndSet(false, true)) {
            return;
        }
        if (tellPeer) {
            try {
                tellPeer(cause);
            } catch (RuntimeException e) {
                cause.addSuppressed(e); // telling the peer is best effort; the failure itself must go on
            }
        }
        failure.set(cause);
        failed.countDown();
        urgent.disconnect();
        background.disconnect();
        if (queue != null) {
            queue.close();
        }
        if (remoteRam != null) {
            remoteRam.wake();
        }
        if (localRam != null) {
            localRam.lock.lock();
            try {
                localRam.changed.signalAll();
            } finally {
                localRam.lock.unlock();
            }
        }
        roundLock.lock();
        try {
            roundChanged.signalAll();
        } finally {
            roundLock.unlock();
        }
        if (notifyHandler && !completed) {
            try {
                handler.onError(cause);
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
            }
        }
    }

    /** Best effort: an ERROR on the urgent queue pair, waiting briefly for it to leave before the disconnect. */
    private void tellPeer(TransportException cause) {
        String text = cause.getMessage();
        Message m = urgent.tryBegin();
        if (m == null) {
            return;
        }
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        if (b.length > Wire.MAX_ERROR_BYTES) {
            b = java.util.Arrays.copyOf(b, Wire.MAX_ERROR_BYTES);
        }
        m.frame(FrameType.ERROR, 0, 0, 0, 0, b.length);
        m.bytes(b);
        if (urgent.tryPost(m)) {
            try {
                urgent.awaitAllSent(System.nanoTime() + ERROR_DELIVERY_NS);
            } catch (io.pagewire.transport.rdma.verbs.VerbsException | TransportException e) {
                // The urgent queue pair is already broken: the peer learns of the failure from the disconnect instead.
                cause.addSuppressed(e);
            }
        }
    }

    private TransportException checkOpen() {
        TransportException f = failure.get();
        if (f != null) {
            return Channel.copy(f);
        }
        if (closed.get()) {
            return new TransportException(Kind.CLOSED, "connection closed");
        }
        return null;
    }

    private void ensureOpen() {
        TransportException e = checkOpen();
        if (e != null) {
            throw e;
        }
    }

    // ================================================================== Channel.Owner: receiving

    @Override
    public void onIdle(Channel ch) {
        if (ch != urgent || failure.get() != null) {
            return;
        }
        long now = System.nanoTime();
        if (now - lastReceivedNs > peerTimeoutNs) {
            fail(new TransportException(Kind.TIMEOUT, "no message from the " + otherSide() + " " + peer + " for "
                    + TimeUnit.NANOSECONDS.toMillis(now - lastReceivedNs) + " ms (peer timeout " + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs)
                    + " ms)"), true, true);
            return;
        }
        if (now - lastSentNs >= heartbeatNs) {
            Message m = urgent.tryBegin();
            if (m != null) {
                m.frame(FrameType.HEARTBEAT, 0, 0, now, 0, 0);
                if (urgent.tryPost(m)) {
                    lastSentNs = now;
                }
            }
        }
    }

    @Override
    public void onInternal(Channel ch, MemorySegment buf, long offset, int length) {
        receive(ch, buf, offset, length, true);
    }

    @Override
    public void onApplication(Channel ch, MemorySegment buf, long offset, int length) {
        receive(ch, buf, offset, length, false);
    }

    private void receive(Channel ch, MemorySegment buf, long offset, int length, boolean internal) {
        LaneKind lane = ch.lane();
        if (lane == LaneKind.URGENT) {
            lastReceivedNs = System.nanoTime();
        }
        Rx rx = role == Role.DESTINATION ? (lane == LaneKind.URGENT ? urgentRx : bgRx) : null;
        if (rx != null) {
            rx.stagingSlot = -1;
            rx.stagedOffset = 0;
        }
        long pos = offset + Protocol.ENVELOPE;
        long end = offset + length;
        try {
            while (pos < end) {
                if (failure.get() != null) {
                    return;
                }
                if (end - pos < FrameHeader.LENGTH) {
                    throw new WireException("a message on the " + ch.name + " queue pair ends inside a frame header (" + (end - pos) + " bytes left)");
                }
                FrameHeader h;
                try {
                    h = ch.header(buf, pos);
                } catch (WireException e) {
                    throw new WireException(e.getMessage() + " (" + lane.name().toLowerCase() + " lane from " + peer + ")");
                }
                pos += FrameHeader.LENGTH;
                int type = h.type();
                if (Protocol.isInternal(type) != internal) {
                    throw new WireException(internal ? Protocol.name(type) + " frame in a control message" : "RDMA control frame "
                            + Protocol.name(type) + " inside a data message");
                }
                if (rx != null && rx.complete) {
                    throw new WireException(Protocol.name(type) + " frame after COMPLETE on the background lane");
                }
                long inline = validate(h, type, lane);
                if (inline > end - pos) {
                    throw new WireException(Protocol.name(type) + " frame: " + inline + " inline bytes run past the end of the message ("
                            + (end - pos) + " left)");
                }
                dispatch(ch, lane, h, type, buf, pos, rx);
                pos += inline;
            }
        } finally {
            if (rx != null && rx.stagingSlot >= 0) {
                ch.stagingSlotReleased();
            }
        }
    }

    /** Validates a frame header; returns its inline byte count. */
    private long validate(FrameHeader h, int type, LaneKind lane) {
        switch (type) {
            case Protocol.RDMA_REGISTER -> {
                expect(h, role == Role.DESTINATION && lane == LaneKind.URGENT, "may only be sent to the destination on the urgent lane");
                return Integer.toUnsignedLong(h.payloadLength());
            }
            case Protocol.RDMA_REGISTERED -> {
                expect(h, role == Role.SOURCE && lane == LaneKind.URGENT, "may only be sent to the source on the urgent lane");
                expect(h, h.count() >= 1 && h.count() <= Protocol.MAX_REGISTER_CHUNKS
                        && Integer.toUnsignedLong(h.payloadLength()) == 4 * h.count(), "needs 1.." + Protocol.MAX_REGISTER_CHUNKS
                        + " chunks and 4 payload bytes per chunk");
                return h.payloadLength();
            }
            case Protocol.RDMA_ROUND_ACK -> {
                expect(h, role == Role.SOURCE && lane == LaneKind.BACKGROUND, "may only be sent to the source on the background lane");
                expect(h, h.payloadLength() == 0, "has no payload");
                return 0;
            }
            case Protocol.RDMA_SETUP, Protocol.RDMA_REGIONS -> throw new WireException("invalid " + Protocol.name(type) + " frame: handshake frame after the handshake");
            default -> {
                validator.validate(h, role, lane);
                return switch (type) {
                    case FrameType.PAGES -> h.hasDataDigest() ? Wire.DIGEST_LENGTH : 0;
                    // The indices travel in the message; the pages' data was RDMA-written.
                    case FrameType.PAGE_LIST -> 8 * h.count() + (h.hasDataDigest() ? Wire.DIGEST_LENGTH : 0);
                    case FrameType.CONTROL, FrameType.ERROR -> Integer.toUnsignedLong(h.payloadLength());
                    default -> 0;
                };
            }
        }
    }

    private static void expect(FrameHeader h, boolean ok, String rule) {
        if (h.flags() != 0) {
            throw new WireException("invalid " + Protocol.name(h.type()) + " frame: unknown flags 0x" + Integer.toHexString(h.flags()));
        }
        if (!ok) {
            throw new WireException("invalid " + Protocol.name(h.type()) + " frame: " + rule);
        }
    }

    private void dispatch(Channel ch, LaneKind lane, FrameHeader h, int type, MemorySegment buf, long pos, Rx rx) {
        boolean isUrgent = lane == LaneKind.URGENT;
        int region = h.region();
        long first = h.first();
        long count = h.count();
        try {
            switch (type) {
                case FrameType.PAGES -> receivePages(lane, h, buf, pos, rx);
                case FrameType.PAGE_LIST -> receivePageList(lane, h, buf, pos, rx);
                case FrameType.ZERO_RUN -> {
                    stats.onReceived(0, FrameHeader.LENGTH, isUrgent);
                    handler.onZeroRun(lane, region, first, count);
                }
                case FrameType.SKIP_RUN -> {
                    stats.onReceived(0, FrameHeader.LENGTH, isUrgent);
                    handler.onSkipRun(lane, region, first, count);
                }
                case FrameType.ROUND_END -> {
                    handler.onRoundEnd(first);
                    Message m = background.begin();
                    m.frame(Protocol.RDMA_ROUND_ACK, 0, 0, first, 0, 0);
                    background.post(m);
                }
                case FrameType.PAGE_REQUEST -> {
                    stats.onReceived(0, FrameHeader.LENGTH, true);
                    handler.onPageRequest(region, first, (int) count);
                }
                case FrameType.COMPLETE -> {
                    if (role == Role.DESTINATION) {
                        if (rx.pagesReceived != count) {
                            throw new WireException("COMPLETE on the background lane says " + count + " pages were sent on it, but "
                                    + rx.pagesReceived + " arrived");
                        }
                        rx.complete = true;
                    } else {
                        completed = true;
                    }
                    handler.onComplete();
                }
                case FrameType.CONTROL -> {
                    int len = h.payloadLength();
                    stats.onReceived(0, FrameHeader.LENGTH + len, isUrgent);
                    handler.onControl(lane, buf.asSlice(pos, len));
                }
                case FrameType.HEARTBEAT -> {
                    // lastReceivedNs is updated for every urgent message
                }
                case FrameType.ERROR -> {
                    int len = h.payloadLength();
                    String text = new String(buf.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                    fail(new TransportException(Kind.PEER_ERROR, "the " + otherSide() + " " + peer + " reported an error: " + text), false, true);
                }
                case Protocol.RDMA_REGISTER -> {
                    int n = (int) Math.min(count, Protocol.MAX_REGISTER_CHUNKS);
                    dstRam.register(region, first, count, buf, pos, h.payloadLength(), rx.rkeys);
                    Message m = urgent.begin();
                    m.frame(Protocol.RDMA_REGISTERED, 0, region, first, n, 4 * n);
                    for (int i = 0; i < n; i++) {
                        m.u32(rx.rkeys[i]);
                    }
                    urgent.post(m);
                    lastSentNs = System.nanoTime();
                }
                case Protocol.RDMA_REGISTERED -> remoteRam.onRegistered(region, first, count, buf, pos);
                case Protocol.RDMA_ROUND_ACK -> onRoundAck(first);
                default -> throw new WireException("unexpected frame " + Protocol.name(type));
            }
        } catch (TransportException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new TransportException(Kind.HANDLER_FAILED, "the " + side() + "'s message handler failed: " + e, e);
        }
    }

    private void receivePages(LaneKind lane, FrameHeader h, MemorySegment buf, long pos, Rx rx) {
        int regionId = h.region();
        long first = h.first();
        int count = (int) h.count();
        RamRegion region = layout.region(regionId);
        long bytes = (long) count * region.pageSize();
        boolean isUrgent = lane == LaneKind.URGENT;
        MemorySegment target;
        long at;
        // Validated: [first, first + count) lies inside the region and bytes <= batch bytes.
        if (dstRam.mode(regionId) == Protocol.MODE_STAGED) {
            target = dstRam.staging(isUrgent);
            at = stage(rx, bytes);
        } else {
            target = region.memory();
            at = first * region.pageSize();
        }
        long wire = FrameHeader.LENGTH;
        if (h.hasDataDigest()) {
            int expected = buf.get(U32, pos);
            int actual = Wire.crc32c(rx.crc, target, at, bytes);
            if (expected != actual) {
                throw new WireException(String.format("data digest mismatch on PAGES region %d pages [%d, %d): frame says 0x%08x, data gives 0x%08x",
                        regionId, first, first + count, expected, actual));
            }
            wire += Wire.DIGEST_LENGTH;
        }
        if (region.placer() != null) {
            region.placer().place(regionId, first, count, target.asSlice(at, bytes));
        }
        if (!isUrgent) {
            rx.pagesReceived += count;
        }
        stats.onReceived(count, bytes + wire, isUrgent);
        handler.onPages(lane, regionId, first, count);
    }

    /** @return the staging offset for a staged frame of {@code bytes}, claiming the message's slot on first use */
    private long stage(Rx rx, long bytes) {
        if (rx.stagingSlot < 0) {
            rx.stagingSlot = rx.stagingNext;
            rx.stagingNext = (rx.stagingNext + 1) % Protocol.STAGING_SLOTS;
        }
        if (rx.stagedOffset + bytes > dstRam.slotBytes()) {
            throw new WireException("staged pages of one message exceed the " + dstRam.slotBytes() + "-byte staging slot");
        }
        long at = (long) rx.stagingSlot * dstRam.slotBytes() + rx.stagedOffset;
        rx.stagedOffset += bytes;
        return at;
    }

    /**
     * A PAGE_LIST notification: the indices are in the message, each page was RDMA-written to its
     * place (or, for a staged region, into the message's staging slot in index order). The
     * indices are checked (inside the region, strictly ascending) before anything is reported;
     * the digest covers the indices and then the pages, as in the byte-stream frame.
     */
    private void receivePageList(LaneKind lane, FrameHeader h, MemorySegment buf, long pos, Rx rx) {
        int regionId = h.region();
        int n = (int) h.count();
        RamRegion region = layout.region(regionId);
        long ps = region.pageSize();
        long indexBytes = 8L * n;
        validator.validatePageList(h, buf.asSlice(pos, indexBytes));
        boolean isUrgent = lane == LaneKind.URGENT;
        long bytes = n * ps;
        boolean staged = dstRam.mode(regionId) == Protocol.MODE_STAGED;
        MemorySegment staging = staged ? dstRam.staging(isUrgent) : null;
        long stagedAt = staged ? stage(rx, bytes) : 0;
        long wire = FrameHeader.LENGTH + indexBytes;
        if (h.hasDataDigest()) {
            CRC32C crc = rx.crc;
            crc.reset();
            Wire.crc32cUpdate(crc, buf, pos, indexBytes);
            if (staged) {
                Wire.crc32cUpdate(crc, staging, stagedAt, bytes);
            } else {
                for (int i = 0; i < n; ) {
                    long first = buf.get(Wire.U64, pos + 8L * i);
                    int j = runEnd(buf, pos, i, n, first);
                    Wire.crc32cUpdate(crc, region.memory(), first * ps, (j - i) * ps);
                    i = j;
                }
            }
            int expected = buf.get(U32, pos + indexBytes);
            if (expected != (int) crc.getValue()) {
                throw new WireException(String.format("data digest mismatch on PAGE_LIST region %d (%d pages from %d): frame says 0x%08x,"
                        + " data gives 0x%08x", regionId, n, buf.get(Wire.U64, pos), expected, (int) crc.getValue()));
            }
            wire += Wire.DIGEST_LENGTH;
        }
        if (!isUrgent) {
            rx.pagesReceived += n;
        }
        stats.onReceived(n, bytes + wire, isUrgent);
        for (int i = 0; i < n; ) {
            long first = buf.get(Wire.U64, pos + 8L * i);
            int j = runEnd(buf, pos, i, n, first);
            if (staged) {
                region.placer().place(regionId, first, j - i, staging.asSlice(stagedAt + i * ps, (j - i) * ps));
            }
            handler.onPages(lane, regionId, first, j - i);
            i = j;
        }
    }

    /** @return the end of the run of consecutive indices starting at entry {@code i} */
    private static int runEnd(MemorySegment buf, long pos, int i, int n, long first) {
        int j = i + 1;
        while (j < n && buf.get(Wire.U64, pos + 8L * j) == first + (j - i)) {
            j++;
        }
        return j;
    }

    private void onRoundAck(long round) {
        roundLock.lock();
        try {
            if (!roundPending || round != awaitedRound) {
                throw new WireException("RDMA_ROUND_ACK for round " + round + ", but " + (roundPending ? "round " + awaitedRound : "no round")
                        + " is outstanding");
            }
            roundPending = false;
            roundChanged.signalAll();
        } finally {
            roundLock.unlock();
        }
    }

    @Override
    public void onSent(Channel ch, Message m) {
        if (localRam != null) {
            localRam.release(m.localRefs, m.localRefCount);
        }
        if (remoteRam != null) {
            remoteRam.release(m.remoteRefs, m.remoteRefCount);
        }
    }

    // ================================================================== source: building messages

    private static long nextBoundary(long pos, long unit) {
        return unit == Long.MAX_VALUE ? Long.MAX_VALUE : (pos / unit + 1) * unit;
    }

    /**
     * Appends as many pages of a run as fit the message: one PAGES frame and its RDMA WRITEs.
     *
     * @return pages appended, 0 when none fit
     */
    private long appendPages(Message m, Channel ch, int regionId, long first, long count, CRC32C crc) {
        RamRegion region = layout.region(regionId);
        long ps = region.pageSize();
        int trailer = dataDigest ? Wire.DIGEST_LENGTH : 0;
        if (m.room() < FrameHeader.LENGTH + trailer) {
            return 0;
        }
        long n = Math.min(count, (batchBytes - m.pageBytes) / ps);
        if (n <= 0) {
            return 0;
        }
        int mode = remoteRam.mode(regionId);
        long localUnit = dataDigest ? Long.MAX_VALUE : localRam.unitBytes();
        long remoteUnit = remoteRam.unitBytes(regionId);
        long off = first * ps;
        long limit = off + n * ps;
        long pos = off;
        int writes = 0;
        int room = Math.min(m.writesRoom(), maxWrites - (m.batch.count()));
        while (pos < limit && writes < room) {
            pos = Math.min(limit, Math.min(nextBoundary(pos, localUnit), nextBoundary(pos, remoteUnit)));
            writes++;
        }
        n = (pos - off) / ps;
        if (n == 0) {
            return 0;
        }
        long len = n * ps;
        boolean isUrgent = ch == urgent;
        long remoteStaging = 0;
        if (mode == Protocol.MODE_STAGED) {
            if (!m.staged) {
                m.stagingSlot = ch.awaitStagingSlot();
                m.staged = true;
            }
            remoteStaging = remoteRam.stagingAddress(isUrgent, m.stagingSlot) + m.stagedBytes;
            m.stagedBytes += len;
        }
        long localStaging = 0;
        int digest = 0;
        if (dataDigest) {
            // Copy first, checksum the copy, write the copy: a running guest may change the page meanwhile.
            MemorySegment.copy(region.memory(), off, m.txStaging, m.txStagingUsed, len);
            copiedPageBytes.add(len);
            digest = Wire.crc32c(crc, m.txStaging, m.txStagingUsed, len);
            localStaging = m.txStaging.address() + m.txStagingUsed;
            m.txStagingUsed += len;
        }
        m.frame(FrameType.PAGES, dataDigest ? FrameHeader.FLAG_DATA_DIGEST : 0, regionId, first, n, (int) len);
        if (dataDigest) {
            m.u32(digest);
        }
        long base = region.memory().address();
        pos = off;
        long end = off + len;
        while (pos < end) {
            long next = Math.min(end, Math.min(nextBoundary(pos, localUnit), nextBoundary(pos, remoteUnit)));
            long localAt;
            int lkey;
            if (dataDigest) {
                localAt = localStaging + (pos - off);
                lkey = m.txStagingLkey;
            } else {
                long unit = pos / localUnit;
                int ref = localRam.pin(regionId, unit, ch);
                m.localRefs[m.localRefCount++] = ref;
                lkey = localRam.lkey(regionId, unit, ref);
                localAt = base + pos;
            }
            long remoteAt;
            int rkey;
            if (mode == Protocol.MODE_STAGED) {
                remoteAt = remoteStaging + (pos - off);
                rkey = remoteRam.stagingRkey(isUrgent);
            } else {
                long unit = pos / remoteUnit;
                int ref = remoteRam.pin(regionId, unit, ch);
                m.remoteRefs[m.remoteRefCount++] = ref;
                rkey = remoteRam.rkey(regionId, unit, ref);
                remoteAt = remoteRam.address(regionId, pos);
            }
            m.write(localAt, (int) (next - pos), lkey, remoteAt, rkey);
            pos = next;
        }
        m.pageBytes += len;
        m.pages += n;
        return n;
    }

    /** Posts a built message and accounts for it. */
    private void postMessage(Channel ch, Message m) {
        ch.post(m);
        messagesPosted.increment();
        framesBuilt.add(m.frames);
        if (m.pages > 0) {
            pageMessages.increment();
        }
        boolean isUrgent = ch == urgent;
        if (isUrgent) {
            lastSentNs = System.nanoTime();
        }
        stats.onSent(m.pages, m.pageBytes + m.length, isUrgent);
    }

    // ================================================================== source: the sender thread

    private void senderLoop() {
        SourceQueue.Entry e = new SourceQueue.Entry();
        CRC32C crc = new CRC32C();
        try {
            while (queue.take(e)) {
                boolean more = true;
                while (more) {
                    Message m = background.begin();
                    int barrier = SourceQueue.NONE;
                    while (true) {
                        if (!append(m, e, crc)) {
                            break; // the message is full; e keeps its remainder
                        }
                        if (e.kind == SourceQueue.ROUND_END || e.kind == SourceQueue.COMPLETE) {
                            barrier = e.kind;
                            e.kind = SourceQueue.NONE;
                            break;
                        }
                        if (!queue.poll(e)) {
                            e.kind = SourceQueue.NONE;
                            break;
                        }
                    }
                    long pending = m.pendingBytes;
                    if (barrier == SourceQueue.ROUND_END) {
                        roundLock.lock();
                        try {
                            roundPending = true;
                        } finally {
                            roundLock.unlock();
                        }
                    }
                    postMessage(background, m);
                    bgPagesSent += m.pages;
                    stats.addPending(-pending);
                    if (barrier == SourceQueue.ROUND_END) {
                        awaitRoundAck();
                    }
                    more = e.kind != SourceQueue.NONE;
                }
                queue.idle();
            }
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
        } catch (TransportException ex) {
            fail(ex, true, true);
        } catch (RuntimeException ex) {
            fail(new TransportException(Kind.HANDLER_FAILED, "the background sender failed: " + ex, ex), true, true);
        }
    }

    /** Appends (as much as fits of) an entry. @return true when the whole entry went in */
    private boolean append(Message m, SourceQueue.Entry e, CRC32C crc) {
        switch (e.kind) {
            case SourceQueue.PAGES -> {
                long n = appendPages(m, background, e.region, e.first, e.count, crc);
                long ps = layout.region(e.region).pageSize();
                m.pendingBytes += n * ps;
                e.first += n;
                e.count -= n;
                if (e.count > 0 && n == 0 && m.isEmpty()) {
                    throw new IllegalStateException("a page of region " + e.region + " does not fit an empty message");
                }
                return e.count == 0;
            }
            case SourceQueue.ZERO_RUN, SourceQueue.SKIP_RUN -> {
                if (m.room() < FrameHeader.LENGTH) {
                    return false;
                }
                m.frame(e.kind == SourceQueue.ZERO_RUN ? FrameType.ZERO_RUN : FrameType.SKIP_RUN, 0, e.region, e.first, e.count, 0);
                return true;
            }
            case SourceQueue.CONTROL -> {
                if (m.room() < FrameHeader.LENGTH + e.payload.length) {
                    return false;
                }
                m.frame(FrameType.CONTROL, 0, 0, 0, 0, e.payload.length);
                m.bytes(e.payload);
                e.payload = null;
                return true;
            }
            case SourceQueue.ROUND_END -> {
                if (m.room() < FrameHeader.LENGTH) {
                    return false;
                }
                m.frame(FrameType.ROUND_END, 0, 0, e.first, 0, 0);
                roundLock.lock();
                try {
                    awaitedRound = e.first;
                } finally {
                    roundLock.unlock();
                }
                return true;
            }
            case SourceQueue.COMPLETE -> {
                if (m.room() < FrameHeader.LENGTH) {
                    return false;
                }
                m.frame(FrameType.COMPLETE, 0, 0, 0, bgPagesSent + m.pages, 0);
                return true;
            }
            default -> throw new IllegalStateException("unknown queue entry kind " + e.kind);
        }
    }

    private void awaitRoundAck() {
        roundLock.lock();
        try {
            while (roundPending) {
                background.waitStep(roundLock, roundChanged);
            }
        } finally {
            roundLock.unlock();
        }
    }

    // ================================================================== lanes

    private RamRegion checkedRegion(int regionId, long firstPage, long pageCount) {
        if (regionId < 0 || regionId >= layout.regionCount()) {
            throw new IndexOutOfBoundsException("region id " + regionId + " outside 0.." + (layout.regionCount() - 1));
        }
        RamRegion r = layout.region(regionId);
        if (pageCount < 1 || firstPage < 0 || firstPage >= r.pageCount() || pageCount > r.pageCount() - firstPage) {
            throw new IndexOutOfBoundsException("pages [" + firstPage + ", " + firstPage + "+" + pageCount + ") outside region "
                    + regionId + " '" + r.name() + "' of " + r.pageCount() + " pages");
        }
        return r;
    }

    private void requireRole(Role expected, String what) {
        if (role != expected) {
            throw new IllegalStateException(what + " is sent by the " + expected.name().toLowerCase() + ", and this is the " + side());
        }
    }

    private static byte[] controlCopy(MemorySegment payload) {
        if (payload.byteSize() > Lane.MAX_CONTROL_BYTES) {
            throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + Lane.MAX_CONTROL_BYTES);
        }
        return payload.toArray(ValueLayout.JAVA_BYTE);
    }

    private final class SourceBackgroundLane implements Lane {
        @Override
        public LaneKind kind() {
            return LaneKind.BACKGROUND;
        }

        private void checkNotCompleting() {
            if (queue.completing()) {
                throw new IllegalStateException("background lane: send after sendComplete()");
            }
        }

        /** A closed connection says so; sending after COMPLETE on a live one is misuse. */
        private void checkSendable() {
            if (closed.get()) {
                throw new TransportException(Kind.CLOSED, "connection closed");
            }
            checkNotCompleting();
            ensureOpen();
        }

        @Override
        public long offerPages(int regionId, long firstPage, long pageCount) {
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            checkSendable();
            long perBatch = batchBytes / r.pageSize();
            long taken = 0;
            while (taken < pageCount) {
                long n = Math.min(pageCount - taken, perBatch);
                if (!queue.offer(SourceQueue.PAGES, regionId, firstPage + taken, n, n * r.pageSize(), null)) {
                    break;
                }
                taken += n;
            }
            if (taken == 0) {
                stats.onBackPressure();
                return BACK_PRESSURED;
            }
            return taken;
        }

        @Override
        public void sendPages(int regionId, long firstPage, long pageCount) {
            long done = 0;
            while (done < pageCount) {
                long n = offerPages(regionId, firstPage + done, pageCount - done);
                if (n == BACK_PRESSURED) {
                    queue.awaitSpace();
                } else {
                    done += n;
                }
            }
        }

        private void put(int kind, int regionId, long first, long count, byte[] payload) {
            checkSendable();
            while (!queue.offer(kind, regionId, first, count, 0, payload)) {
                stats.onBackPressure();
                queue.awaitSpace();
            }
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            checkedRegion(regionId, firstPage, pageCount);
            put(SourceQueue.ZERO_RUN, regionId, firstPage, pageCount, null);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            checkedRegion(regionId, firstPage, pageCount);
            put(SourceQueue.SKIP_RUN, regionId, firstPage, pageCount, null);
        }

        @Override
        public void sendRoundEnd(long round) {
            if (round < 0) {
                throw new IllegalArgumentException("round " + round + " is negative");
            }
            put(SourceQueue.ROUND_END, 0, round, 0, null);
        }

        @Override
        public void sendPageRequest(int regionId, long firstPage, int pageCount) {
            throw new IllegalStateException("page requests go on the urgent lane, from the destination");
        }

        @Override
        public void sendControl(MemorySegment payload) {
            byte[] copy = controlCopy(payload);
            put(SourceQueue.CONTROL, 0, 0, 0, copy);
        }

        @Override
        public void sendComplete() {
            put(SourceQueue.COMPLETE, 0, 0, 0, null);
        }

        @Override
        public void flush() {
            queue.awaitDrained();
            background.awaitQuiet();
            ensureOpen();
        }
    }

    /** Built and posted by the calling thread under {@link #urgentLaneLock}: its own queue pair, nothing queued ahead. */
    private final class UrgentLane implements Lane {
        @Override
        public LaneKind kind() {
            return LaneKind.URGENT;
        }

        private Message begin() {
            urgent.lockWithProgress(urgentLaneLock);
            try {
                ensureOpen();
                return urgent.begin();
            } catch (RuntimeException e) {
                urgentLaneLock.unlock();
                throw e;
            }
        }

        private void post(Message m) {
            try {
                postMessage(urgent, m);
            } finally {
                urgentLaneLock.unlock();
            }
        }

        @Override
        public long offerPages(int regionId, long firstPage, long pageCount) {
            sendPages(regionId, firstPage, pageCount);
            return pageCount;
        }

        @Override
        public void sendPages(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "page data");
            checkedRegion(regionId, firstPage, pageCount);
            long done = 0;
            while (done < pageCount) {
                Message m = begin();
                long n;
                try {
                    n = appendPages(m, urgent, regionId, firstPage + done, pageCount - done, urgentCrc);
                    if (n == 0) {
                        throw new IllegalStateException("a page of region " + regionId + " does not fit an empty message");
                    }
                } catch (RuntimeException e) {
                    urgent.abandon(m);
                    urgentLaneLock.unlock();
                    throw e;
                }
                post(m);
                done += n;
            }
        }

        private void headerOnly(int type, int regionId, long first, long count) {
            Message m = begin();
            m.frame(type, 0, regionId, first, count, 0);
            post(m);
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a zero run");
            checkedRegion(regionId, firstPage, pageCount);
            headerOnly(FrameType.ZERO_RUN, regionId, firstPage, pageCount);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a skip run");
            checkedRegion(regionId, firstPage, pageCount);
            headerOnly(FrameType.SKIP_RUN, regionId, firstPage, pageCount);
        }

        @Override
        public void sendRoundEnd(long round) {
            throw new IllegalStateException("round ends go on the background lane");
        }

        @Override
        public void sendPageRequest(int regionId, long firstPage, int pageCount) {
            requireRole(Role.DESTINATION, "a page request");
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            if (pageCount > batchBytes / r.pageSize()) {
                throw new IllegalArgumentException("page request of " + pageCount + " pages exceeds " + batchBytes / r.pageSize() + " (one batch)");
            }
            headerOnly(FrameType.PAGE_REQUEST, regionId, firstPage, pageCount);
        }

        @Override
        public void sendControl(MemorySegment payload) {
            if (payload.byteSize() > MAX_CONTROL_BYTES) {
                throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + MAX_CONTROL_BYTES);
            }
            Message m = begin();
            m.frame(FrameType.CONTROL, 0, 0, 0, 0, (int) payload.byteSize());
            m.bytes(payload, 0, payload.byteSize());
            post(m);
        }

        @Override
        public void sendComplete() {
            requireRole(Role.DESTINATION, "the completion acknowledgement (the source completes on the background lane)");
            Message m = begin();
            m.frame(FrameType.COMPLETE, 0, 0, 0, 0, 0);
            completed = true;
            post(m);
        }

        @Override
        public void flush() {
            ensureOpen();
            urgent.awaitQuiet();
        }
    }

    /** @return what this connection did itself so far */
    RdmaWork work() {
        return new RdmaWork(copiedPageBytes.sum(), messagesPosted.sum(), pageMessages.sum(), framesBuilt.sum(),
                urgent.creditMessages.sum() + background.creditMessages.sum());
    }

    /** @return registrations this connection holds now: source local chunks, destination chunks (for tests) */
    int liveRegistrations() {
        return localRam != null ? localRam.liveRegistrations() : dstRam.registeredChunks();
    }

    @Override
    public String toString() {
        return "RdmaConnection[" + side() + ", peer=" + peer + ", batchBytes=" + batchBytes + ", dataDigest=" + dataDigest + "]";
    }
}
