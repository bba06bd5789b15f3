package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.kit.FailureOrigin;
import io.pagewire.transport.spi.kit.FrameDispatcher;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.SourceLane;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32C;

import static io.pagewire.transport.spi.wire.Wire.U32;

/**
 * One pagewire connection over RDMA: an urgent and a background queue pair, each with its own
 * completion queue and poller thread; on the source a sender thread feeds the background queue
 * pair from a bounded queue of page descriptors. The kit ({@link KitConnection}) owns lifecycle,
 * failure, the urgent lane and dispatch; this class adds how messages are built, posted and read.
 *
 * <h2>Data path</h2>
 * The source packs consecutive background entries into one message of at most {@code batch-bytes}
 * of pages: for each page run an RDMA WRITE per registration unit it crosses, straight from guest
 * RAM into destination RAM (or the destination's staging slot for regions with a placer), then
 * one SEND whose frames say what landed. The destination checks every frame against the layout
 * before it reports anything; RC ordering guarantees the pages are in memory when the SEND
 * arrives. Zero and skip runs are frames without writes. Round ends are acknowledged
 * (RDMA_ROUND_ACK) before the source writes pages of the next round.
 *
 * <h2>Failure</h2>
 * Both queue pairs are disconnected on failure (every outstanding work request at both ends is
 * flushed, waking every poller); a clean end only stops the pollers. A background queue pair that
 * breaks first gives the urgent poller a moment to bring in the peer's own reason.
 */
final class RdmaConnection extends KitConnection implements Channel.Owner {
    private static final long ERROR_DELIVERY_NS = TimeUnit.MILLISECONDS.toNanos(500);
    private static final long URGENT_VERDICT_NS = TimeUnit.MILLISECONDS.toNanos(200);

    private final int batchBytes;
    final Channel urgent;
    final Channel background;
    private final Runnable releaseDomain;
    // source side
    final LocalRam localRam;
    final RemoteRam remoteRam;
    private final MessageWriter writer;
    private final CRC32C urgentCrc = new CRC32C(); // guarded by the urgent lock
    // destination side
    final DestinationRam dstRam;
    private final Rx bgRx;
    private final Rx urgentRx;

    private final AtomicReference<TransportException> backgroundLost = new AtomicReference<>();
    private final CountDownLatch verdict = new CountDownLatch(1);

    /** Per-channel receive state, confined to that channel's poller thread. */
    private final class Rx {
        final FrameDispatcher dispatcher = new FrameDispatcher(RdmaConnection.this, 0);
        final int[] rkeys = new int[Protocol.MAX_REGISTER_CHUNKS];
        int stagingNext;
        int stagingSlot;
        long stagedOffset;
    }

    RdmaConnection(Role role, String peer, RamLayout layout, RdmaOptions options, int batchBytes, boolean dataDigest, MessageHandler handler,
                   long heartbeatNs, long peerTimeoutNs, Channel urgent, Channel background, Runnable releaseDomain,
                   LocalRam localRam, RemoteRam remoteRam, DestinationRam dstRam) {
        // Pending page data: the queue, the entry the sender carries over, the message it is building.
        super(new Setup(role, peer, layout, handler, heartbeatNs, peerTimeoutNs, batchBytes, dataDigest, false, 1,
                capabilities(dataDigest), (long) (options.queueDepth() + 2) * batchBytes));
        this.batchBytes = batchBytes;
        this.urgent = urgent;
        this.background = background;
        this.releaseDomain = releaseDomain;
        this.localRam = localRam;
        this.remoteRam = remoteRam;
        this.dstRam = dstRam;
        this.bgRx = new Rx();
        this.urgentRx = new Rx();
        if (role == Role.SOURCE) {
            SourceQueue queue = new SourceQueue(options.queueDepth(), stats, this::failure);
            // A message under construction pins the chunks it writes through; the background and the
            // urgent lane together must never pin a whole cache, or neither could make room.
            int w = Protocol.MAX_WRS - 1;
            if (!options.pinAll()) {
                w = Math.min(w, options.cacheChunks() / 4);
            }
            if (remoteRam.hasOnDemandRegions()) {
                w = Math.min(w, remoteRam.cacheChunks() / 4);
            }
            this.writer = new MessageWriter(this, queue, Math.max(1, w));
        } else {
            this.writer = new MessageWriter(this, null, 0);
        }
    }

    /** @return whether page frames carry a data digest */
    boolean dataDigest() {
        return dataDigest;
    }

    /** @return the largest page payload of one message */
    int batchBytes() {
        return batchBytes;
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
        thread("pagewire-rdma-" + side + "-urgent", "urgent queue pair", false, urgent::runPoller);
        thread("pagewire-rdma-" + side + "-bg", "background queue pair", true, background::runPoller);
        if (role == Role.SOURCE) {
            thread("pagewire-rdma-src-sender", "background sender", true, writer::senderLoop);
        }
        open();
    }

    // ================================================================== lifecycle (the kit calls these)

    @Override
    protected void shutdown() {
        if (failure() != null) {
            urgent.disconnect();
            background.disconnect();
        } else {
            // A clean end (closed after completion, or the peer ended it): stop, and let the peer see the disconnect.
            urgent.stop();
            background.stop();
            urgent.disconnect();
            background.disconnect();
        }
        writer.wake();
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
        verdict.countDown();
    }

    @Override
    protected void release() {
        urgent.close();
        background.close();
        urgentRx.dispatcher.close();
        bgRx.dispatcher.close();
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

    @Override
    public TransportException stopCause() {
        return checkOpen();
    }

    @Override
    public void onFailure(Channel ch, TransportException e) {
        if (!running()) {
            return; // our own close or failure disconnected the queue pairs
        }
        if (endedInOrder()) {
            peerEnded(); // after completion the peer may close whenever it likes: an orderly end, not an error
            return;
        }
        if (ch == background && e.kind() == Kind.CONNECTION_LOST) {
            // A peer that fails tells us why on the urgent queue pair, then disconnects both: the background
            // flush may be seen first. Let the urgent poller drain what has arrived (the ERROR) and decide;
            // fall back to this failure if it cannot (gone, or stuck in a callback).
            backgroundLost.compareAndSet(null, e);
            urgent.wake();
            try {
                verdict.await(URGENT_VERDICT_NS, TimeUnit.NANOSECONDS);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
        }
        // A queue pair that broke here (a completion error) is worth telling the peer about, if it can still hear.
        fail(e, e.kind() == Kind.PEER_ERROR ? FailureOrigin.PEER : FailureOrigin.LOCAL);
    }

    @Override
    public void onDrained(Channel ch) {
        TransportException lost = backgroundLost.get();
        if (ch == urgent && lost != null && running()) {
            fail(lost, FailureOrigin.LOCAL); // tell the peer: its side of the broken queue pair may not have noticed yet
        }
    }

    @Override
    public void onIdle(Channel ch) {
        if (ch != urgent || !running()) {
            return;
        }
        long now = System.nanoTime();
        try {
            checkPeerTimeout(now);
        } catch (TransportException e) {
            fail(e, FailureOrigin.LOCAL);
            return;
        }
        maybeHeartbeat(now);
    }

    // ================================================================== urgent writes (the urgent lock is held)

    @Override
    protected void lockUrgent() {
        urgent.lockWithProgress(urgentLock);
    }

    @Override
    protected boolean writeHeartbeat(long now) {
        Message m = urgent.tryBegin(); // never waits: the poller thread calls this
        if (m == null) {
            return false;
        }
        m.frame(FrameType.HEARTBEAT, 0, 0, now, 0, 0);
        return urgent.tryPost(m);
    }

    @Override
    protected void writeUrgent(int type, int regionId, long first, long count, MemorySegment payload) {
        if (type == FrameType.ERROR) {
            // The connection is failing: best effort, without waiting for buffers or credits, then a short
            // wait for it to leave before the queue pairs are disconnected.
            Message m = urgent.tryBegin();
            if (m == null) {
                return;
            }
            m.frame(FrameType.ERROR, 0, 0, 0, 0, (int) payload.byteSize());
            m.bytes(payload, 0, payload.byteSize());
            if (urgent.tryPost(m)) {
                try {
                    urgent.awaitAllSent(System.nanoTime() + ERROR_DELIVERY_NS);
                } catch (io.pagewire.transport.rdma.verbs.VerbsException e) {
                    throw new TransportException(Kind.CONNECTION_LOST, "the urgent queue pair is broken: " + e.getMessage(), e);
                }
            }
            return;
        }
        Message m = urgent.begin();
        m.frame(type, 0, regionId, first, count, payload == null ? 0 : (int) payload.byteSize());
        if (payload != null) {
            m.bytes(payload, 0, payload.byteSize());
        }
        writer.postMessage(urgent, m);
    }

    @Override
    protected int writeUrgentPages(RamRegion region, int regionId, long first, int count) {
        Message m = urgent.begin();
        long n;
        try {
            n = writer.appendPages(m, urgent, regionId, first, count, urgentCrc);
            if (n == 0) {
                throw new IllegalStateException("a page of region " + regionId + " does not fit an empty message");
            }
        } catch (RuntimeException e) {
            urgent.abandon(m);
            throw e;
        }
        writer.postMessage(urgent, m);
        return (int) n;
    }

    @Override
    protected void flushUrgent() {
        urgent.awaitQuiet();
    }

    // ================================================================== receiving (on each channel's poller thread)

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
            noteReceived(System.nanoTime());
        }
        Rx rx = lane == LaneKind.URGENT ? urgentRx : bgRx;
        rx.stagingSlot = -1;
        rx.stagedOffset = 0;
        long pos = offset + Protocol.ENVELOPE;
        long end = offset + length;
        try {
            while (pos < end && running()) {
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
                long inline = validate(h, type, lane, rx.dispatcher);
                if (inline > end - pos) {
                    throw new WireException(Protocol.name(type) + " frame: " + inline + " inline bytes run past the end of the message ("
                            + (end - pos) + " left)");
                }
                dispatch(lane, h, type, buf, pos, rx);
                pos += inline;
            }
        } finally {
            if (rx.stagingSlot >= 0) {
                ch.stagingSlotReleased();
            }
        }
    }

    /** Validates a frame header (RDMA's own frames here, the rest by the dispatcher); returns its inline byte count. */
    private long validate(FrameHeader h, int type, LaneKind lane, FrameDispatcher dispatcher) {
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
                dispatcher.validate(h, lane);
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

    private void dispatch(LaneKind lane, FrameHeader h, int type, MemorySegment buf, long pos, Rx rx) {
        switch (type) {
            case FrameType.PAGES -> receivePages(lane, h, buf, pos, rx);
            case FrameType.PAGE_LIST -> receivePageList(lane, h, buf, pos, rx);
            case FrameType.CONTROL, FrameType.ERROR -> rx.dispatcher.frame(h, lane, buf.asSlice(pos, h.payloadLength()));
            case Protocol.RDMA_REGISTER -> {
                int n = (int) Math.min(h.count(), Protocol.MAX_REGISTER_CHUNKS);
                dstRam.register(h.region(), h.first(), h.count(), buf, pos, h.payloadLength(), rx.rkeys);
                Message m = urgent.begin();
                m.frame(Protocol.RDMA_REGISTERED, 0, h.region(), h.first(), n, 4 * n);
                for (int i = 0; i < n; i++) {
                    m.u32(rx.rkeys[i]);
                }
                writer.postMessage(urgent, m);
            }
            case Protocol.RDMA_REGISTERED -> remoteRam.onRegistered(h.region(), h.first(), h.count(), buf, pos);
            case Protocol.RDMA_ROUND_ACK -> writer.onRoundAck(h.first());
            default -> rx.dispatcher.frame(h, lane, null);
        }
    }

    /** The handler heard round end {@code round}: the source may write pages of the next round. */
    @Override
    protected void roundEndDelivered(long round) {
        Message m = background.begin();
        m.frame(Protocol.RDMA_ROUND_ACK, 0, 0, round, 0, 0);
        background.post(m);
    }

    private void receivePages(LaneKind lane, FrameHeader h, MemorySegment buf, long pos, Rx rx) {
        int regionId = h.region();
        long first = h.first();
        int count = (int) h.count();
        RamRegion region = layout.region(regionId);
        long bytes = (long) count * region.pageSize();
        // Validated: [first, first + count) lies inside the region and bytes <= batch bytes.
        MemorySegment data = dstRam.mode(regionId) == Protocol.MODE_STAGED
                ? dstRam.staging(lane == LaneKind.URGENT).asSlice(stage(rx, bytes), bytes)
                : region.memory().asSlice(first * region.pageSize(), bytes);
        long wire = FrameHeader.LENGTH;
        if (h.hasDataDigest()) {
            rx.dispatcher.verifyPages(buf.get(U32, pos), regionId, first, count, data);
            wire += Wire.DIGEST_LENGTH;
        }
        rx.dispatcher.pages(lane, regionId, first, count, data, bytes + wire);
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
     * place (or, for a staged region, into the message's staging slot in index order). The indices
     * are checked before anything is reported; the digest covers the indices and then the pages.
     */
    private void receivePageList(LaneKind lane, FrameHeader h, MemorySegment buf, long pos, Rx rx) {
        int regionId = h.region();
        int n = (int) h.count();
        long indexBytes = 8L * n;
        MemorySegment indices = buf.asSlice(pos, indexBytes);
        rx.dispatcher.validatePageList(h, indices);
        long bytes = n * layout.region(regionId).pageSize();
        MemorySegment staged = dstRam.mode(regionId) == Protocol.MODE_STAGED
                ? dstRam.staging(lane == LaneKind.URGENT).asSlice(stage(rx, bytes), bytes) : null;
        long wire = FrameHeader.LENGTH + indexBytes;
        if (h.hasDataDigest()) {
            rx.dispatcher.verifyList(buf.get(U32, pos + indexBytes), regionId, indices, n, staged);
            wire += Wire.DIGEST_LENGTH;
        }
        rx.dispatcher.pageList(lane, regionId, indices, n, staged, bytes + wire);
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

    // ================================================================== source: the sender thread

    // ================================================================== the source's background lane

    @Override
    protected SourceLane sourceLane() {
        return writer.sourceLane();
    }

    /** @return what this connection did itself so far */
    RdmaWork work() {
        return writer.work();
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
