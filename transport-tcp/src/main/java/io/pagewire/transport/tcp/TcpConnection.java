package io.pagewire.transport.tcp;

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
import io.pagewire.transport.tcp.net.NativeSocket;
import io.pagewire.transport.tcp.net.SocketErrnoException;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

/**
 * One pagewire connection over TCP: an urgent socket (TCP_NODELAY, DSCP-marked, its own
 * receive thread) and {@code channels} background sockets (one sender thread each on the
 * source, one receiver thread each on the destination).
 *
 * <h2>Shared channel ({@code urgent-channel=shared})</h2>
 * There is no urgent socket: {@link #urgentSocket} is background channel 0's socket. Urgent
 * frames carry {@link FrameHeader#FLAG_URGENT_LANE} and are written under {@link #urgentLock},
 * which the source's channel-0 sender also holds for each of its frames (a fair lock, so an
 * urgent writer goes next, between two background frames, never inside one). The urgent receive
 * thread reads channel 0 and routes each frame to its lane by that flag; on the destination it
 * is channel 0's background receiver too, so urgent frames wait behind the bulk data ahead of
 * them: the variant without a priority lane, kept for comparison.
 *
 * <h2>Threads and sockets</h2>
 * Each socket is owned by the one thread that reads it (destination background, both urgent)
 * or writes it (source background), and that thread closes it when it ends. The source's shared
 * channel 0 has two owners (its sender and the urgent receiver): the last of them to end closes
 * it. Failure and close shut every socket down first, which wakes every blocked call, so threads
 * always end. Application threads write the urgent socket under {@link #urgentLock}.
 */
final class TcpConnection implements Connection {
    private final Role role;
    private final String peer;
    private final RamLayout layout;
    private final int channels;
    private final boolean dataDigest;
    private final int maxPayload;
    private final FrameValidator validator;
    private final NativeSocket urgentSocket;
    private final NativeSocket[] backgroundSockets;
    private final MessageHandler handler;
    private final ConnectionStats stats;
    private final long heartbeatNs;
    private final long peerTimeoutNs;
    private final Set<Capability> capabilities;
    private final int backgroundNice;
    /** urgent-channel=shared: the urgent lane travels on background channel 0 ({@code urgentSocket == backgroundSockets[0]}). */
    private final boolean sharedChannel;
    /** Shared channel: threads still using channel 0's socket; the last one closes it. */
    private final java.util.concurrent.atomic.AtomicInteger sharedSocketUsers;

    private final AtomicReference<TransportException> failure = new AtomicReference<>();
    /** Counted down once the connection has failed. */
    private final java.util.concurrent.CountDownLatch failed = new java.util.concurrent.CountDownLatch(1);
    /** How long a background channel that broke waits for the urgent lane to deliver the peer's reason. */
    private static final long PEER_REASON_WAIT_MS = 500;
    private final AtomicBoolean closed = new AtomicBoolean();
    /** Source: the destination acknowledged COMPLETE. Destination: it sent the acknowledgement. */
    private volatile boolean completed;
    /**
     * Destination: the COMPLETE acknowledgement is being written. The source may receive it and
     * close before the writing thread (a niced background thread, when it answers from the round
     * barrier) gets to set {@link #completed}: end of stream is orderly from here on. If the write
     * fails, the writer reports that failure itself.
     */
    private volatile boolean acknowledging;
    private volatile long lastReceivedNs = System.nanoTime();
    private volatile long lastSentNs = System.nanoTime();
    private final List<Thread> threads = new ArrayList<>();

    private final ReentrantLock urgentLock;
    private final FrameWriter urgentWriter;
    private boolean urgentClosed; // guarded by urgentLock

    private final BackgroundQueue queue;   // source only
    private final Barrier barrier;         // destination only
    private final long[] channelPagesReceived; // destination only, each written by its channel thread

    private final Lane backgroundLane;
    private final Lane urgentLane;

    TcpConnection(Role role, String peer, RamLayout layout, int channels, boolean dataDigest, int maxPayload, int queueDepth,
                  NativeSocket urgentSocket, NativeSocket[] backgroundSockets, MessageHandler handler,
                  long heartbeatNs, long peerTimeoutNs, Set<Capability> capabilities, int backgroundNice, boolean sharedChannel) {
        this.role = role;
        this.peer = peer;
        this.layout = layout;
        this.channels = channels;
        this.dataDigest = dataDigest;
        this.maxPayload = maxPayload;
        this.validator = new FrameValidator(layout.descriptors(), maxPayload, dataDigest, sharedChannel);
        this.urgentSocket = urgentSocket;
        this.backgroundSockets = backgroundSockets;
        this.handler = handler == null ? new MessageHandler() { } : handler;
        this.heartbeatNs = heartbeatNs;
        this.peerTimeoutNs = peerTimeoutNs;
        this.capabilities = capabilities;
        this.backgroundNice = backgroundNice;
        this.sharedChannel = sharedChannel;
        if (sharedChannel && urgentSocket != backgroundSockets[0]) {
            throw new IllegalArgumentException("a shared channel's urgent socket must be background channel 0's");
        }
        // Fair when shared: an urgent writer waiting for channel 0 goes before the sender's next frame.
        this.urgentLock = new ReentrantLock(sharedChannel);
        this.sharedSocketUsers = new java.util.concurrent.atomic.AtomicInteger(role == Role.SOURCE ? 2 : 1);
        long limit = (long) (queueDepth + channels) * maxPayload;
        this.stats = new ConnectionStats(limit);
        this.urgentWriter = new FrameWriter(urgentSocket, dataDigest, maxPayload, sharedChannel ? FrameHeader.FLAG_URGENT_LANE : 0);
        if (role == Role.SOURCE) {
            this.queue = new BackgroundQueue(queueDepth, channels, stats, failure::get);
            this.barrier = null;
            this.channelPagesReceived = null;
            this.backgroundLane = new SourceBackgroundLane();
        } else {
            this.queue = null;
            this.barrier = new Barrier(channels);
            this.channelPagesReceived = new long[channels];
            this.backgroundLane = new io.pagewire.transport.spi.DestinationBackgroundLane(this::ensureOpen);
        }
        this.urgentLane = new UrgentLane();
    }

    /** Starts the threads; called once the handshake is done. */
    void start() throws IOException {
        // Stalled mid-frame on the urgent socket for a whole peer timeout: the peer is gone.
        urgentSocket.receiveTimeoutMs(TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs));
        String side = role == Role.SOURCE ? "src" : "dst";
        threads.add(Thread.ofPlatform().daemon().name("pagewire-tcp-" + side + (sharedChannel ? "-shared-0" : "-urgent"))
                .unstarted(this::urgentLoop));
        for (int c = 0; c < channels; c++) {
            if (sharedChannel && c == 0 && role == Role.DESTINATION) {
                continue; // the urgent receive thread reads channel 0
            }
            int channel = c;
            Runnable r = role == Role.SOURCE ? () -> senderLoop(channel) : () -> backgroundReceiveLoop(channel);
            threads.add(Thread.ofPlatform().daemon().name("pagewire-tcp-" + side + "-bg-" + c).unstarted(r));
        }
        threads.forEach(Thread::start);
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
        return failure.get();
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
            fail(new TransportException(Kind.CLOSED, "the " + side() + " closed the connection before the migration completed"),
                    true, false);
        } else {
            shutdownAll();
        }
        Thread self = Thread.currentThread();
        for (Thread t : threads) {
            if (t != self) {
                t.interrupt();
            }
        }
        for (Thread t : threads) {
            if (t == self) {
                continue;
            }
            try {
                t.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        if (threads.isEmpty()) {
            closeSockets(); // never started: nobody else owns the sockets
        }
    }

    private String side() {
        return role == Role.SOURCE ? "source" : "destination";
    }

    private String otherSide() {
        return role == Role.SOURCE ? "destination" : "source";
    }

    // ================================================================== failure

    /**
     * Fails the connection once: records the cause, tells the peer (best effort) when the cause
     * is local, wakes every thread, and reports to the handler.
     */
    void fail(TransportException cause, boolean tellPeer, boolean notifyHandler) {
        if (!failure.compareAndSet(null, cause)) {
            return;
        }
        failed.countDown();
        if (tellPeer) {
            sendErrorBestEffort(cause.getMessage());
        }
        shutdownAll();
        if (notifyHandler && !completed) {
            try {
                handler.onError(cause);
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
            }
        }
    }

    private void sendErrorBestEffort(String message) {
        try {
            // Another thread may be stuck writing the urgent socket; do not wait for it long.
            if (urgentLock.tryLock(100, TimeUnit.MILLISECONDS)) {
                try {
                    if (!urgentClosed && !urgentSocket.isShutdown()) {
                        urgentWriter.writeError(message);
                    }
                } finally {
                    urgentLock.unlock();
                }
            }
        } catch (IOException e) {
            TransportException f = failure.get();
            if (f != null) {
                f.addSuppressed(e); // the peer may already be gone; keep the detail with the cause
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void shutdownAll() {
        urgentSocket.shutdown();
        for (NativeSocket s : backgroundSockets) {
            s.shutdown();
        }
        if (queue != null) {
            queue.close();
        }
        if (barrier != null) {
            barrier.abort(failure.get() != null ? failure.get()
                    : new TransportException(Kind.CLOSED, "connection closed"));
        }
    }

    private void closeSockets() {
        urgentLock.lock();
        try {
            urgentClosed = true;
            urgentSocket.close();
            urgentWriter.close();
        } finally {
            urgentLock.unlock();
        }
        for (NativeSocket s : backgroundSockets) {
            s.close();
        }
    }

    private TransportException checkOpen() {
        TransportException f = failure.get();
        if (f != null) {
            return new TransportException(f.kind(), f.getMessage(), f);
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

    /** Turns an I/O error on a socket into the connection's failure. */
    private TransportException lost(String what, IOException e) {
        TransportException f = failure.get();
        if (f != null) {
            return f; // the socket failed because we are already failing
        }
        String detail = e instanceof SocketErrnoException se && se.isTimeout()
                ? "no data from the " + otherSide() + " for " + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms (peer timeout)"
                : e.getMessage();
        Kind kind = e instanceof SocketErrnoException se && se.isTimeout() ? Kind.TIMEOUT : Kind.CONNECTION_LOST;
        return new TransportException(kind, what + " to " + peer + " failed: " + detail, e);
    }

    // ================================================================== threads

    private void senderLoop(int channel) {
        NativeSocket socket = backgroundSockets[channel];
        BackgroundQueue.Entry[] batch = new BackgroundQueue.Entry[Wire.MAX_LIST_PAGES];
        for (int i = 0; i < batch.length; i++) {
            batch[i] = new BackgroundQueue.Entry();
        }
        long[] pageList = new long[Wire.MAX_LIST_PAGES];
        int[] listLimit = new int[layout.regionCount()];
        for (int r = 0; r < listLimit.length; r++) {
            listLimit[r] = (int) validator.maxListPages(layout.region(r).descriptor().pageShift());
        }
        long pagesSent = 0;
        // Shared channel 0: each frame is written under the urgent lane's (fair) lock, so urgent frames go between frames.
        ReentrantLock frameLock = sharedChannel && channel == 0 ? urgentLock : null;
        try (FrameWriter writer = new FrameWriter(socket, dataDigest, maxPayload)) {
            lowerPriority();
            int k;
            while ((k = queue.take(channel, batch, listLimit)) > 0) {
                BackgroundQueue.Entry e = batch[0];
                if (frameLock != null) {
                    frameLock.lock();
                }
                try {
                    if (k > 1 || e.kind == BackgroundQueue.PAGE_LIST) {
                        // Page lists and short runs of one region, as one PAGE_LIST (ascending, each page once).
                        int n = 0;
                        for (int i = 0; i < k; i++) {
                            BackgroundQueue.Entry b = batch[i];
                            if (b.kind == BackgroundQueue.PAGE_LIST) {
                                System.arraycopy(b.list, 0, pageList, n, (int) b.count);
                                n += (int) b.count;
                            } else {
                                for (long p = b.first; p < b.first + b.count; p++) {
                                    pageList[n++] = p;
                                }
                            }
                        }
                        java.util.Arrays.sort(pageList, 0, n);
                        int unique = 0;
                        for (int i = 0; i < n; i++) {
                            if (unique == 0 || pageList[i] != pageList[unique - 1]) {
                                pageList[unique++] = pageList[i];
                            }
                        }
                        long wrote = writer.writePageList(layout.region(e.region), e.region, pageList, unique);
                        pagesSent += unique;
                        stats.onSent(unique, wrote, false);
                    } else {
                        long wrote;
                        switch (e.kind) {
                            case BackgroundQueue.PAGES -> {
                                wrote = writer.writePages(layout.region(e.region), e.region, e.first, (int) e.count);
                                pagesSent += e.count;
                                stats.onSent(e.count, wrote, false);
                            }
                            case BackgroundQueue.ZERO_RUN -> stats.onSent(0, writer.writeHeaderOnly(FrameType.ZERO_RUN, e.region, e.first, e.count), false);
                            case BackgroundQueue.SKIP_RUN -> stats.onSent(0, writer.writeHeaderOnly(FrameType.SKIP_RUN, e.region, e.first, e.count), false);
                            case BackgroundQueue.CONTROL -> stats.onSent(0, writer.writeControl(e.payload), false);
                            case BackgroundQueue.ROUND_END -> stats.onSent(0, writer.writeHeaderOnly(FrameType.ROUND_END, 0, e.first, 0), false);
                            case BackgroundQueue.COMPLETE -> stats.onSent(0, writer.writeHeaderOnly(FrameType.COMPLETE, 0, 0, pagesSent), false);
                            default -> throw new IllegalStateException("unknown queue entry kind " + e.kind);
                        }
                    }
                } finally {
                    if (frameLock != null) {
                        lastSentNs = System.nanoTime();
                        frameLock.unlock();
                    }
                }
                for (int i = 0; i < k; i++) {
                    queue.done(batch[i]);
                }
            }
        } catch (IOException ex) {
            fail(lost("background channel " + channel, ex), false, true);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
        } catch (TransportException ex) {
            fail(ex, true, true);
        } catch (RuntimeException ex) {
            fail(new TransportException(Kind.HANDLER_FAILED, "background channel " + channel + " sender failed: " + ex, ex), true, true);
        } finally {
            if (frameLock != null) {
                releaseSharedSocket();
            } else {
                socket.close();
            }
        }
    }

    /** Shared channel: the last of its users closes channel 0's socket (never while another may still use the descriptor). */
    private void releaseSharedSocket() {
        if (sharedSocketUsers.decrementAndGet() == 0) {
            urgentSocket.close();
        }
    }

    /** @return how messages name the urgent lane's socket */
    private String urgentName() {
        return sharedChannel ? "shared channel 0" : "urgent connection";
    }

    private void backgroundReceiveLoop(int channel) {
        NativeSocket socket = backgroundSockets[channel];
        try (Receiver rx = new Receiver(socket, LaneKind.BACKGROUND, channel)) {
            lowerPriority();
            rx.run();
        } catch (IOException ex) {
            awaitPeerReason();
            fail(lost("background channel " + channel, ex), false, true);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            fail(new TransportException(Kind.CLOSED, "interrupted"), false, false);
        } catch (WireException ex) {
            fail(new WireException(ex.getMessage() + " (background channel " + channel + " from " + peer + ")"), true, true);
        } catch (TransportException ex) {
            fail(ex, true, true);
        } finally {
            socket.close();
        }
    }

    private void urgentLoop() {
        try (Receiver rx = new Receiver(urgentSocket, LaneKind.URGENT, sharedChannel ? 0 : -1)) {
            rx.run();
        } catch (IOException ex) {
            fail(lost(urgentName(), ex), false, true);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            fail(new TransportException(Kind.CLOSED, "interrupted"), false, false);
        } catch (WireException ex) {
            fail(new WireException(ex.getMessage() + " (" + urgentName() + " from " + peer + ")"), true, true);
        } catch (TransportException ex) {
            fail(ex, true, true);
        } finally {
            closeUrgent();
        }
    }

    /** Background threads yield the CPU to urgent ones under load (option background-nice). */
    private void lowerPriority() throws IOException {
        if (backgroundNice > 0) {
            io.pagewire.transport.tcp.net.ThreadPriority.setNice(backgroundNice);
        }
    }

    private void closeUrgent() {
        urgentSocket.shutdown(); // wakes a writer blocked in send, so the lock comes free
        urgentLock.lock();
        try {
            urgentClosed = true;
            if (!sharedChannel) {
                urgentSocket.close();
            }
            urgentWriter.close();
        } finally {
            urgentLock.unlock();
        }
        if (sharedChannel) {
            releaseSharedSocket();
        }
    }

    /**
     * A peer that fails sends ERROR on the urgent connection and closes everything; a background
     * channel may see its end of stream first. Waits briefly for the urgent receiver to deliver
     * the peer's own reason, which then wins over "connection closed".
     */
    private void awaitPeerReason() {
        try {
            failed.await(PEER_REASON_WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void maybeHeartbeat(long now) {
        if (now - lastSentNs < heartbeatNs || !urgentLock.tryLock()) {
            return; // recent traffic, or a writer is busy: either way the peer hears from us
        }
        try {
            if (!urgentClosed && failure.get() == null) {
                urgentWriter.writeHeaderOnly(FrameType.HEARTBEAT, 0, now, 0);
                lastSentNs = now;
            }
        } catch (IOException e) {
            fail(lost("heartbeat on the " + urgentName(), e), false, true);
        } finally {
            urgentLock.unlock();
        }
    }

    /**
     * Reads and dispatches the frames of one socket. Buffers are allocated once per thread. On the
     * shared channel each frame's lane comes from its URGENT_LANE flag; elsewhere it is the socket's.
     */
    private final class Receiver implements AutoCloseable {
        private final NativeSocket socket;
        /** The socket's role: URGENT for the urgent connection or the shared channel (heartbeats, peer timeout, end of stream). */
        private final LaneKind socketLane;
        /** This socket's background channel, or -1 for a dedicated urgent connection. */
        private final int channel;
        /** This socket carries both lanes (urgent-channel=shared, channel 0). */
        private final boolean bothLanes;
        /** The lane of the frame being dispatched. */
        private LaneKind lane;
        private final Arena arena = Arena.ofConfined();
        private final FrameHeader header = new FrameHeader(arena);
        private final MemorySegment small = arena.allocate(Wire.MAX_CONTROL_BYTES, 64);
        private final MemorySegment trailer = arena.allocate(Wire.DIGEST_LENGTH, 8);
        private final CRC32C crc = new CRC32C();
        private MemorySegment staging; // for regions with a placer; allocated on first use
        private MemorySegment listIov; // PAGE_LIST scatter list; allocated on first use
        private MemorySegment listMsghdr;
        private boolean channelComplete;

        Receiver(NativeSocket socket, LaneKind socketLane, int channel) {
            this.socket = socket;
            this.socketLane = socketLane;
            this.channel = channel;
            this.bothLanes = sharedChannel && socketLane == LaneKind.URGENT;
            this.lane = socketLane;
        }

        void run() throws IOException, InterruptedException {
            boolean urgent = socketLane == LaneKind.URGENT;
            long heartbeatMs = Math.max(1, TimeUnit.NANOSECONDS.toMillis(heartbeatNs));
            while (true) {
                if (urgent) {
                    while (true) {
                        maybeHeartbeat(System.nanoTime());
                        // Readable first: a receiver that was busy (a handler, a round-end barrier) for a
                        // while finds the peer's frames waiting, which is no timeout.
                        if (socket.pollReadable(heartbeatMs)) {
                            break;
                        }
                        long now = System.nanoTime();
                        if (now - lastReceivedNs > peerTimeoutNs) {
                            throw new TransportException(Kind.TIMEOUT, "no frame from the " + otherSide() + " " + peer + " for "
                                    + TimeUnit.NANOSECONDS.toMillis(now - lastReceivedNs) + " ms (peer timeout "
                                    + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms)");
                        }
                    }
                }
                if (socket.recvFully(header.segment(), 0, FrameHeader.LENGTH) < 0) {
                    onEof();
                    return;
                }
                if (urgent) {
                    lastReceivedNs = System.nanoTime();
                }
                header.decode();
                lane = laneOf(header);
                if (channelComplete && lane == LaneKind.BACKGROUND) {
                    throw new WireException(FrameType.name(header.type()) + " frame after COMPLETE");
                }
                validator.validate(header, role, lane);
                if (!dispatch()) {
                    return;
                }
            }
        }

        /** The lane a frame belongs to: its socket's, or on the shared channel the one its URGENT_LANE flag says. */
        private LaneKind laneOf(FrameHeader h) {
            if (!bothLanes) {
                if (h.isUrgentLane() && sharedChannel) {
                    throw new WireException("invalid " + FrameType.name(h.type()) + " frame: URGENT_LANE flag on background channel "
                            + channel + "; urgent frames travel only on the shared channel 0");
                }
                return socketLane; // a stray flag elsewhere is refused by the validator
            }
            if (h.isUrgentLane()) {
                return LaneKind.URGENT;
            }
            if (role == Role.SOURCE) {
                throw new WireException("invalid " + FrameType.name(h.type()) + " frame: no URGENT_LANE flag; the destination sends"
                        + " only urgent-lane frames on the shared channel");
            }
            return LaneKind.BACKGROUND;
        }

        /** @return false to stop reading */
        private boolean dispatch() throws IOException, InterruptedException {
            int type = header.type();
            switch (type) {
                case FrameType.PAGES -> receivePages();
                case FrameType.PAGE_LIST -> receivePageList();
                case FrameType.ZERO_RUN -> {
                    stats.onReceived(0, FrameHeader.LENGTH, lane == LaneKind.URGENT);
                    callHandler(() -> handler.onZeroRun(lane, header.region(), header.first(), header.count()));
                }
                case FrameType.SKIP_RUN -> {
                    stats.onReceived(0, FrameHeader.LENGTH, lane == LaneKind.URGENT);
                    callHandler(() -> handler.onSkipRun(lane, header.region(), header.first(), header.count()));
                }
                case FrameType.ROUND_END -> {
                    long round = header.first();
                    barrier.arrive(channel, FrameType.ROUND_END, round, () -> callHandler(() -> handler.onRoundEnd(round)));
                }
                case FrameType.PAGE_REQUEST -> {
                    stats.onReceived(0, FrameHeader.LENGTH, true);
                    callHandler(() -> handler.onPageRequest(header.region(), header.first(), (int) header.count()));
                }
                case FrameType.COMPLETE -> {
                    if (role == Role.DESTINATION) {
                        long got = channelPagesReceived[channel];
                        if (got != header.count()) {
                            throw new WireException("COMPLETE on background channel " + channel + " says " + header.count()
                                    + " pages were sent on it, but " + got + " arrived");
                        }
                        channelComplete = true;
                        barrier.arrive(channel, FrameType.COMPLETE, 0, () -> callHandler(handler::onComplete));
                    } else {
                        completed = true;
                        callHandler(handler::onComplete);
                    }
                }
                case FrameType.CONTROL -> {
                    int len = header.payloadLength();
                    readFully(small, 0, len);
                    stats.onReceived(0, FrameHeader.LENGTH + len, lane == LaneKind.URGENT);
                    MemorySegment view = small.asSlice(0, len);
                    callHandler(() -> handler.onControl(lane, view));
                }
                case FrameType.ERROR -> {
                    int len = header.payloadLength();
                    readFully(small, 0, len);
                    String text = new String(small.asSlice(0, len).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                    fail(new TransportException(Kind.PEER_ERROR, "the " + otherSide() + " " + peer + " reported an error: " + text),
                            false, true);
                    return false;
                }
                case FrameType.HEARTBEAT -> {
                    // lastReceivedNs already updated
                }
                default -> throw new WireException("unexpected frame " + FrameType.name(type));
            }
            return true;
        }

        private void receivePages() throws IOException {
            int regionId = header.region();
            RamRegion region = layout.region(regionId);
            long first = header.first();
            int count = (int) header.count();
            long len = header.payloadLength() & 0xffffffffL;
            // Validated: [first, first + count) lies inside the region and len == count * pageSize.
            MemorySegment target;
            long offset;
            if (region.placer() == null) {
                target = region.memory();
                offset = first * region.pageSize();
            } else {
                if (staging == null) {
                    staging = arena.allocate(maxPayload, 4096);
                }
                target = staging;
                offset = 0;
            }
            readFully(target, offset, len);
            long wire = FrameHeader.LENGTH + len;
            if (header.hasDataDigest()) {
                readFully(trailer, 0, Wire.DIGEST_LENGTH);
                int expected = trailer.get(Wire.U32, 0);
                int actual = Wire.crc32c(crc, target, offset, len);
                if (expected != actual) {
                    throw new WireException(String.format("data digest mismatch on PAGES region %d pages [%d, %d): frame says 0x%08x,"
                            + " data gives 0x%08x", regionId, first, first + count, expected, actual));
                }
                wire += Wire.DIGEST_LENGTH;
            }
            if (region.placer() != null) {
                MemorySegment data = staging.asSlice(0, len);
                callHandler(() -> region.placer().place(regionId, first, count, data));
            }
            if (lane == LaneKind.BACKGROUND) {
                channelPagesReceived[channel] += count;
            }
            stats.onReceived(count, wire, lane == LaneKind.URGENT);
            callHandler(() -> handler.onPages(lane, regionId, first, count));
        }

        /** PAGE_LIST: indices first (validated), then the data scattered straight into RAM with one recvmsg. */
        private void receivePageList() throws IOException {
            int regionId = header.region();
            RamRegion region = layout.region(regionId);
            int n = (int) header.count();
            long pageSize = region.pageSize();
            long indexBytes = 8L * n;
            readFully(small, 0, indexBytes);
            validator.validatePageList(header, small);
            if (listIov == null) {
                listIov = arena.allocate((long) Wire.MAX_LIST_PAGES * NativeSocket.IOVEC_BYTES, 8);
                listMsghdr = arena.allocate(NativeSocket.MSGHDR_BYTES, 8);
            }
            boolean placed = region.placer() != null;
            if (placed && staging == null) {
                staging = arena.allocate(maxPayload, 4096);
            }
            int runs = 0;
            for (int i = 0; i < n; ) {
                long first = small.get(Wire.U64, 8L * i);
                int j = i + 1;
                while (j < n && small.get(Wire.U64, 8L * j) == first + (j - i)) {
                    j++;
                }
                if (placed) {
                    NativeSocket.iovec(listIov, runs++, staging, i * pageSize, (j - i) * pageSize);
                } else {
                    NativeSocket.iovec(listIov, runs++, region.memory(), first * pageSize, (j - i) * pageSize);
                }
                i = j;
            }
            long dataBytes = n * pageSize;
            socket.recvvFully(listMsghdr, listIov, runs, dataBytes);
            long wire = FrameHeader.LENGTH + indexBytes + dataBytes;
            if (header.hasDataDigest()) {
                readFully(trailer, 0, Wire.DIGEST_LENGTH);
                crc.reset();
                Wire.crc32cUpdate(crc, small, 0, indexBytes);
                if (placed) {
                    Wire.crc32cUpdate(crc, staging, 0, dataBytes);
                } else {
                    for (int i = 0; i < n; ) {
                        long first = small.get(Wire.U64, 8L * i);
                        int j = i + 1;
                        while (j < n && small.get(Wire.U64, 8L * j) == first + (j - i)) {
                            j++;
                        }
                        Wire.crc32cUpdate(crc, region.memory(), first * pageSize, (j - i) * pageSize);
                        i = j;
                    }
                }
                int expected = trailer.get(Wire.U32, 0);
                if (expected != (int) crc.getValue()) {
                    throw new WireException(String.format("data digest mismatch on PAGE_LIST region %d (%d pages from %d): frame says 0x%08x,"
                            + " data gives 0x%08x", regionId, n, small.get(Wire.U64, 0), expected, (int) crc.getValue()));
                }
                wire += Wire.DIGEST_LENGTH;
            }
            // Report (and place) run by run, as onPages takes contiguous ranges.
            for (int i = 0; i < n; ) {
                long first = small.get(Wire.U64, 8L * i);
                int j = i + 1;
                while (j < n && small.get(Wire.U64, 8L * j) == first + (j - i)) {
                    j++;
                }
                int count = j - i;
                if (placed) {
                    MemorySegment data = staging.asSlice(i * pageSize, count * pageSize);
                    callHandler(() -> region.placer().place(regionId, first, count, data));
                }
                callHandler(() -> handler.onPages(lane, regionId, first, count));
                i = j;
            }
            if (lane == LaneKind.BACKGROUND) {
                channelPagesReceived[channel] += n;
            }
            stats.onReceived(n, wire, lane == LaneKind.URGENT);
        }

        private void readFully(MemorySegment dst, long offset, long len) throws IOException {
            if (len == 0) {
                return;
            }
            if (socket.recvFully(dst, offset, len) < 0) {
                throw new EOFException("connection closed by the " + otherSide() + " in the middle of a "
                        + FrameType.name(header.type()) + " frame (truncated stream)");
            }
        }

        private void onEof() {
            if (completed || acknowledging || (socketLane == LaneKind.BACKGROUND && channelComplete) || closed.get()) {
                return; // orderly end
            }
            String where = socketLane == LaneKind.URGENT ? urgentName() : "background channel " + channel;
            if (socketLane == LaneKind.BACKGROUND) {
                awaitPeerReason();
            }
            fail(new TransportException(Kind.CONNECTION_LOST, "the " + otherSide() + " " + peer + " closed the " + where
                    + " before the migration completed"), false, true);
        }

        @Override
        public void close() {
            arena.close();
        }
    }

    private void callHandler(Runnable call) {
        try {
            call.run();
        } catch (TransportException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new TransportException(Kind.HANDLER_FAILED, "the " + side() + "'s message handler failed: " + e, e);
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
            throw new IllegalStateException(what + " is sent by the " + expected.name().toLowerCase() + ", and this is the "
                    + side());
        }
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

        // Short runs are gathered here into one PAGE_LIST entry (single producer: no lock needed).
        private final long[] pending = new long[Wire.MAX_LIST_PAGES];
        private int pendingCount;
        private int pendingRegion = -1;

        /** Hands the gathered list to the queue; false when the queue is full (nothing changed). */
        private boolean offerPending() {
            if (pendingCount == 0) {
                return true;
            }
            long bytes = pendingCount * layout.region(pendingRegion).pageSize();
            if (!queue.offerList(pendingRegion, pending, pendingCount, bytes)) {
                return false;
            }
            pendingCount = 0;
            return true;
        }

        /** Every other operation first hands over the gathered list, to keep the order. */
        private void flushPending() {
            while (!offerPending()) {
                stats.onBackPressure();
                queue.awaitSpace();
            }
        }

        @Override
        public long offerPages(int regionId, long firstPage, long pageCount) {
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            ensureOpen();
            checkNotCompleting();
            int listLimit = (int) validator.maxListPages(r.descriptor().pageShift());
            if (pageCount < listLimit / 2) {
                if ((pendingRegion != regionId || pendingCount + pageCount > listLimit) && !offerPending()) {
                    stats.onBackPressure();
                    return BACK_PRESSURED;
                }
                pendingRegion = regionId;
                for (long p = firstPage; p < firstPage + pageCount; p++) {
                    pending[pendingCount++] = p;
                }
                if (pendingCount == listLimit) {
                    offerPending(); // best effort now; otherwise the next call or a flush hands it over
                }
                return pageCount;
            }
            if (!offerPending()) {
                stats.onBackPressure();
                return BACK_PRESSURED;
            }
            long perBatch = maxPayload / r.pageSize();
            long taken = 0;
            while (taken < pageCount) {
                long n = Math.min(pageCount - taken, perBatch);
                if (!queue.offer(BackgroundQueue.PAGES, regionId, firstPage + taken, n, n * r.pageSize(), null)) {
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

        private void sendRun(int kind, int regionId, long firstPage, long pageCount) {
            checkedRegion(regionId, firstPage, pageCount);
            ensureOpen();
            checkNotCompleting();
            flushPending();
            while (!queue.offer(kind, regionId, firstPage, pageCount, 0, null)) {
                stats.onBackPressure();
                queue.awaitSpace();
            }
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            sendRun(BackgroundQueue.ZERO_RUN, regionId, firstPage, pageCount);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            sendRun(BackgroundQueue.SKIP_RUN, regionId, firstPage, pageCount);
        }

        @Override
        public void sendRoundEnd(long round) {
            if (round < 0) {
                throw new IllegalArgumentException("round " + round + " is negative");
            }
            ensureOpen();
            checkNotCompleting();
            flushPending();
            queue.barrier(BackgroundQueue.ROUND_END, round);
        }

        @Override
        public void sendPageRequest(int regionId, long firstPage, int pageCount) {
            throw new IllegalStateException("page requests go on the urgent lane, from the destination");
        }

        @Override
        public void sendControl(MemorySegment payload) {
            byte[] copy = controlCopy(payload);
            ensureOpen();
            checkNotCompleting();
            flushPending();
            while (!queue.offer(BackgroundQueue.CONTROL, 0, 0, 0, 0, copy)) {
                stats.onBackPressure();
                queue.awaitSpace();
            }
        }

        @Override
        public void sendComplete() {
            ensureOpen();
            checkNotCompleting();
            flushPending();
            queue.barrier(BackgroundQueue.COMPLETE, 0);
        }

        @Override
        public void flush() {
            ensureOpen();
            flushPending();
            queue.awaitIdle();
        }
    }

    private static byte[] controlCopy(MemorySegment payload) {
        if (payload.byteSize() > Lane.MAX_CONTROL_BYTES) {
            throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + Lane.MAX_CONTROL_BYTES);
        }
        return payload.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    /** Written synchronously by the calling thread under {@link #urgentLock}: nothing is queued ahead of it. */
    private final class UrgentLane implements Lane {
        @Override
        public LaneKind kind() {
            return LaneKind.URGENT;
        }

        private interface Write {
            long write() throws IOException;
        }

        private void locked(Write w, long pages) {
            urgentLock.lock();
            try {
                ensureOpen();
                if (urgentClosed) {
                    throw new TransportException(Kind.CLOSED, urgentName() + " closed");
                }
                long bytes = w.write();
                lastSentNs = System.nanoTime();
                stats.onSent(pages, bytes, true);
            } catch (IOException e) {
                TransportException t = lost("urgent send", e);
                fail(t, false, true);
                throw new TransportException(t.kind(), t.getMessage(), t);
            } finally {
                urgentLock.unlock();
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
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            long perBatch = maxPayload / r.pageSize();
            for (long done = 0; done < pageCount; ) {
                long first = firstPage + done;
                int n = (int) Math.min(pageCount - done, perBatch);
                locked(() -> urgentWriter.writePages(r, regionId, first, n), n);
                done += n;
            }
        }

        @Override
        public void sendZeroRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a zero run");
            checkedRegion(regionId, firstPage, pageCount);
            locked(() -> urgentWriter.writeHeaderOnly(FrameType.ZERO_RUN, regionId, firstPage, pageCount), 0);
        }

        @Override
        public void sendSkipRun(int regionId, long firstPage, long pageCount) {
            requireRole(Role.SOURCE, "a skip run");
            checkedRegion(regionId, firstPage, pageCount);
            locked(() -> urgentWriter.writeHeaderOnly(FrameType.SKIP_RUN, regionId, firstPage, pageCount), 0);
        }

        @Override
        public void sendRoundEnd(long round) {
            throw new IllegalStateException("round ends go on the background lane");
        }

        @Override
        public void sendPageRequest(int regionId, long firstPage, int pageCount) {
            requireRole(Role.DESTINATION, "a page request");
            RamRegion r = checkedRegion(regionId, firstPage, pageCount);
            if (pageCount > maxPayload / r.pageSize()) {
                throw new IllegalArgumentException("page request of " + pageCount + " pages exceeds " + maxPayload / r.pageSize()
                        + " (one batch)");
            }
            locked(() -> urgentWriter.writeHeaderOnly(FrameType.PAGE_REQUEST, regionId, firstPage, pageCount), 0);
        }

        @Override
        public void sendControl(MemorySegment payload) {
            if (payload.byteSize() > MAX_CONTROL_BYTES) {
                throw new IllegalArgumentException("control payload of " + payload.byteSize() + " bytes exceeds " + MAX_CONTROL_BYTES);
            }
            locked(() -> urgentWriter.writeControl(payload), 0);
        }

        @Override
        public void sendComplete() {
            requireRole(Role.DESTINATION, "the completion acknowledgement (the source completes on the background lane)");
            locked(() -> {
                acknowledging = true;
                long n = urgentWriter.writeHeaderOnly(FrameType.COMPLETE, 0, 0, 0);
                completed = true;
                return n;
            }, 0);
        }

        @Override
        public void flush() {
            ensureOpen(); // urgent sends are written before they return
        }
    }

    @Override
    public String toString() {
        return "TcpConnection[" + side() + ", peer=" + peer + ", channels=" + channels + ", dataDigest=" + dataDigest
                + ", urgentChannel=" + (sharedChannel ? "shared" : "dedicated") + "]";
    }
}
