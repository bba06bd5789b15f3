package io.pagewire.transport.spi.kit.stream;

import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.kit.FrameDispatcher;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.SourceLane;
import io.pagewire.linux.ErrnoException;
import io.pagewire.linux.NativeSocket;
import io.pagewire.linux.ThreadTuning;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A connection over stream sockets (TCP, unix domain): an urgent socket with its own receive
 * thread, and {@code channels} background sockets (one sender thread each on the source, one
 * receiver thread each on the destination). Everything else, lifecycle, failure, the urgent lane,
 * dispatch to the handler, is the kit's.
 *
 * <h2>Source</h2>
 * Each channel has its own bounded {@link BackgroundQueue} of batch descriptors and its own sender
 * thread, which writes each batch with one gathering {@code sendmsg} (header, pages straight from
 * guest RAM or a digest staging copy, digest). {@link #backgroundChannel(int) A channel's lane} fills
 * its queue only (QEMU's multifd shape: one producer per channel, no lock shared between channels);
 * the background lane spreads batches over all queues, taking turns. Short runs of one region are
 * gathered into PAGE_LIST frames. Round ends and COMPLETE are barriers across the channels: placed
 * in every queue once what is ahead of them is taken; control messages go on channel 0, in order.
 *
 * <h2>Destination</h2>
 * One thread per socket reads a header, validates it, receives the payload straight into
 * destination RAM (scattered with one {@code recvmsg} for a PAGE_LIST), checks the digest and hands
 * the frame to its {@link FrameDispatcher}. A handler that blocks stops that socket only: the
 * stream's flow control pushes back to the source.
 *
 * <h2>Shared channel</h2>
 * With {@code sharedChannel} there is no urgent socket: the urgent socket is background channel 0.
 * Urgent frames carry {@link FrameHeader#FLAG_URGENT_LANE} and are written under the (fair) urgent
 * lock, which the source's channel-0 sender also holds for each of its frames, so an urgent frame
 * goes between two background frames; the urgent thread reads channel 0 and routes frames by the flag.
 *
 * <h2>Sockets</h2>
 * {@link #shutdown()} shuts every socket down, which wakes every blocked call; {@link #release()}
 * closes them once every thread has ended, so no thread ever uses a recycled descriptor.
 */
public class StreamConnection extends KitConnection {
    private static final System.Logger LOG = System.getLogger(StreamConnection.class.getName());
    private final String scheme;
    private final int channels;
    private final boolean sharedChannel;
    private final int backgroundNice;
    private final NativeSocket urgentSocket;
    private final NativeSocket[] backgroundSockets;
    private final FrameWriter urgentWriter;
    /** Source only: one bounded work queue per channel, taken by that channel's sender thread only. */
    private final BackgroundQueue[] queues;
    /** Source only, made in {@link #sourceLane()}: the lane of each channel, and the one that spreads over all. */
    private StreamSourceLane[] channelLanes;
    private StreamSourceLane mainLane;

    /**
     * @param scheme the transport's URI scheme, for thread names and messages
     * @param urgent the urgent socket (background channel 0's when the setup says shared channel)
     * @param background the background sockets, one per channel
     * @param queueDepth source: background batches queued ahead of the senders
     * @param backgroundNice nice value of background threads (0: as the JVM)
     */
    public StreamConnection(String scheme, Setup setup, NativeSocket urgent, NativeSocket[] background, int queueDepth, int backgroundNice) {
        super(setup);
        this.scheme = scheme;
        this.channels = background.length;
        this.sharedChannel = setup.sharedChannel();
        if (sharedChannel && urgent != background[0]) {
            throw new IllegalArgumentException("a shared channel's urgent socket must be background channel 0's");
        }
        this.urgentSocket = urgent;
        this.backgroundSockets = background.clone();
        this.backgroundNice = backgroundNice;
        this.urgentWriter = new FrameWriter(urgent, dataDigest, maxPayload, sharedChannel ? FrameHeader.FLAG_URGENT_LANE : 0);
        if (role == Role.SOURCE) {
            int depth = channelQueueDepth(queueDepth, channels);
            this.queues = new BackgroundQueue[channels];
            for (int c = 0; c < channels; c++) {
                queues[c] = new BackgroundQueue(depth, 1, stats, this::failure);
            }
        } else {
            this.queues = null;
        }
        for (int c = 0; c < channels; c++) {
            if (background[c] != urgent) {
                streamPeer("background channel " + c, socketPeer(background[c]));
            }
        }
    }

    /** @return how messages name a socket's peer (its own address and port) */
    private static String socketPeer(NativeSocket s) {
        try {
            return s.peerName();
        } catch (IOException e) {
            return "a peer that is gone (" + e.getMessage() + ")";
        }
    }

    /** @return the bound on pending background page data of a source with these settings */
    public static long pendingLimit(int queueDepth, int channels, int batchBytes) {
        return (long) (channelQueueDepth(queueDepth, channels) * channels + channels) * batchBytes;
    }

    /** @return each channel's share of {@code queueDepth} batches (at least 1) */
    private static int channelQueueDepth(int queueDepth, int channels) {
        return Math.max(1, (queueDepth + channels - 1) / channels);
    }

    /** Starts the threads (after the handler's {@code onOpen}); the handshake is done. */
    public final void start() throws IOException {
        // Stalled mid-frame on the urgent socket for a whole peer timeout: the peer is gone.
        urgentSocket.receiveTimeoutMs(TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs));
        String side = role == Role.SOURCE ? "src" : "dst";
        String name = "pagewire-" + scheme() + "-" + side;
        thread(name + (sharedChannel ? "-shared-0" : "-urgent"), urgentName(), false, this::urgentLoop);
        for (int c = 0; c < channels; c++) {
            if (sharedChannel && c == 0 && role == Role.DESTINATION) {
                continue; // the urgent receive thread reads channel 0
            }
            int channel = c;
            thread(name + "-bg-" + c, "background channel " + c, true, role == Role.SOURCE ? () -> senderLoop(channel) : () -> receiveLoop(channel));
        }
        open();
    }

    /** @return the URI scheme, for thread names and messages */
    protected final String scheme() {
        return scheme;
    }

    @Override
    protected void shutdown() {
        if (endedInOrder() && failure() == null) {
            // An orderly end: a record layer (TLS) says so before the sockets go (close_notify), so the peer can tell it from a cut.
            endLayers();
        }
        urgentSocket.shutdown();
        for (NativeSocket s : backgroundSockets) {
            s.shutdown();
        }
        if (queues != null) {
            for (BackgroundQueue q : queues) {
                q.close();
            }
        }
    }

    private void endLayers() {
        java.util.Set<NativeSocket> sockets = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        sockets.add(urgentSocket);
        sockets.addAll(java.util.Arrays.asList(backgroundSockets));
        for (NativeSocket s : sockets) {
            try {
                s.closeLayerOutbound();
            } catch (IOException e) {
                // The peer may have gone first (it closed in order too): its end does not need ours.
                LOG.log(System.Logger.Level.DEBUG, "no close_notify to the " + otherSide() + " on " + s + ": " + e.getMessage());
            }
        }
    }

    @Override
    protected void release() {
        urgentWriter.close();
        urgentSocket.close();
        for (NativeSocket s : backgroundSockets) {
            s.close();
        }
    }

    @Override
    protected TransportException ioFailure(String where, IOException e) {
        if (e instanceof ErrnoException ee && ee.isTimeout()) {
            return new TransportException(Kind.TIMEOUT, where + " to " + peerOf(where) + " failed: no data from the " + otherSide() + " for "
                    + TimeUnit.NANOSECONDS.toMillis(peerTimeoutNs) + " ms (peer timeout)", e);
        }
        return super.ioFailure(where, e);
    }

    // ================================================================== urgent writes (the urgent lock is held)

    @Override
    protected void writeUrgent(int type, int regionId, long first, long count, MemorySegment payload) throws IOException {
        if (payload != null) {
            urgentWriter.writePayload(type, payload);
        } else {
            urgentWriter.writeHeaderOnly(type, regionId, first, count);
        }
    }

    @Override
    protected int writeUrgentPages(RamRegion region, int regionId, long first, int count) throws IOException {
        urgentWriter.writePages(region, regionId, first, count);
        return count;
    }

    /** @return how messages name the urgent lane's socket */
    private String urgentName() {
        return sharedChannel ? "shared channel 0" : "urgent connection";
    }

    // ================================================================== threads

    /** The scheduler slice the urgent receive thread asks for (as the Aeron transport's urgent threads). */
    private static final long URGENT_SLICE_NS = TimeUnit.MICROSECONDS.toNanos(100);

    private void lowerPriority() {
        String why = ThreadTuning.nice(backgroundNice);
        if (why != null) {
            System.getLogger(StreamConnection.class.getName()).log(System.Logger.Level.DEBUG,
                    scheme() + ": background thread keeps its nice value: " + why);
        }
    }

    private void senderLoop(int channel) throws IOException, InterruptedException {
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
        try (FrameWriter writer = new FrameWriter(socket, dataDigest, maxPayload, 0)) {
            lowerPriority();
            int k;
            BackgroundQueue queue = queues[channel];
            while ((k = queue.take(0, batch, listLimit)) > 0) {
                BackgroundQueue.Entry e = batch[0];
                if (frameLock != null) {
                    frameLock.lock();
                }
                try {
                    if (k > 1 || e.kind == BackgroundQueue.PAGE_LIST) {
                        int n = gather(batch, k, pageList);
                        stats.onSent(n, writer.writePageList(layout.region(e.region), e.region, pageList, n), false);
                        pagesSent += n;
                    } else if (e.kind == BackgroundQueue.PAGES) {
                        stats.onSent(e.count, writer.writePages(layout.region(e.region), e.region, e.first, (int) e.count), false);
                        pagesSent += e.count;
                    } else if (e.kind == BackgroundQueue.CONTROL) {
                        stats.onSent(0, writer.writePayload(FrameType.CONTROL, MemorySegment.ofArray(e.payload)), false);
                    } else {
                        // ZERO_RUN, SKIP_RUN (region, first, count); ROUND_END (first = round); COMPLETE (count = pages on this channel)
                        long count = e.kind == BackgroundQueue.COMPLETE ? pagesSent : e.count;
                        stats.onSent(0, writer.writeHeaderOnly(e.kind, e.region, e.first, count), false);
                    }
                } finally {
                    if (frameLock != null) {
                        frameLock.unlock();
                    }
                }
                for (int i = 0; i < k; i++) {
                    queue.done(batch[i]);
                }
            }
        }
    }

    /** Page lists and short runs of one region, as one ascending list of distinct pages. @return its length */
    private static int gather(BackgroundQueue.Entry[] batch, int k, long[] pageList) {
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
        Arrays.sort(pageList, 0, n);
        int unique = 0;
        for (int i = 0; i < n; i++) {
            if (unique == 0 || pageList[i] != pageList[unique - 1]) {
                pageList[unique++] = pageList[i];
            }
        }
        return unique;
    }

    private void receiveLoop(int channel) throws IOException {
        lowerPriority();
        try (Receiver rx = new Receiver(backgroundSockets[channel], LaneKind.BACKGROUND, channel)) {
            rx.run();
        }
    }

    private void urgentLoop() throws IOException {
        // Page requests and their answers wait on this thread: a short scheduler slice (Linux 6.12+, unprivileged)
        // lets it run soon after it wakes, on a busy machine too; timer slack 1 us keeps its polls on time.
        String why = ThreadTuning.urgentThread(URGENT_SLICE_NS);
        if (why != null) {
            System.getLogger(StreamConnection.class.getName()).log(System.Logger.Level.DEBUG, scheme() + ": urgent thread not tuned: " + why);
        }
        try (Receiver rx = new Receiver(urgentSocket, LaneKind.URGENT, 0)) {
            rx.run();
        }
    }

    /**
     * Reads and dispatches the frames of one socket. Buffers are allocated once per thread. On the
     * shared channel each frame's lane comes from its URGENT_LANE flag; elsewhere it is the socket's.
     */
    private final class Receiver implements AutoCloseable {
        private final NativeSocket socket;
        /** URGENT for the urgent connection or the shared channel (heartbeats, peer timeout, end of stream). */
        private final LaneKind socketLane;
        private final int channel;
        private final boolean bothLanes;
        private final Arena arena = Arena.ofConfined();
        private final FrameHeader header = new FrameHeader(arena);
        private final MemorySegment small = arena.allocate(Wire.MAX_CONTROL_BYTES, 64);
        private final MemorySegment trailer = arena.allocate(Wire.DIGEST_LENGTH, 8);
        private final FrameDispatcher dispatcher;
        private MemorySegment listIov; // PAGE_LIST scatter list; allocated on first use
        private MemorySegment listMsghdr;

        Receiver(NativeSocket socket, LaneKind socketLane, int channel) {
            this.socket = socket;
            this.socketLane = socketLane;
            this.channel = channel;
            this.bothLanes = sharedChannel && socketLane == LaneKind.URGENT;
            this.dispatcher = new FrameDispatcher(StreamConnection.this, channel);
        }

        void run() throws IOException {
            boolean urgent = socketLane == LaneKind.URGENT;
            long heartbeatMs = Math.max(1, TimeUnit.NANOSECONDS.toMillis(heartbeatNs));
            while (true) {
                if (urgent) {
                    // Readable first: a receiver that was busy (a handler, a round barrier) for a while finds
                    // the peer's frames waiting, which is no timeout.
                    while (!socket.pollReadable(heartbeatMs)) {
                        long now = System.nanoTime();
                        maybeHeartbeat(now);
                        checkPeerTimeout(now);
                    }
                    maybeHeartbeat(System.nanoTime());
                }
                if (socket.recvFully(header.segment(), 0, FrameHeader.LENGTH) < 0) {
                    boolean background = socketLane == LaneKind.BACKGROUND;
                    if (!(background && dispatcher.complete())) {
                        streamEnded(urgent ? urgentName() : "background channel " + channel, background);
                    }
                    return;
                }
                if (urgent) {
                    noteReceived(System.nanoTime());
                }
                header.decode();
                LaneKind lane = laneOf(header);
                dispatcher.validate(header, lane);
                if (!dispatch(lane)) {
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
        private boolean dispatch(LaneKind lane) throws IOException {
            switch (header.type()) {
                case FrameType.PAGES -> receivePages(lane);
                case FrameType.PAGE_LIST -> receivePageList(lane);
                case FrameType.CONTROL, FrameType.ERROR -> {
                    int len = header.payloadLength();
                    readFully(small, 0, len);
                    return dispatcher.frame(header, lane, small.asSlice(0, len));
                }
                default -> {
                    return dispatcher.frame(header, lane, null);
                }
            }
            return true;
        }

        private void receivePages(LaneKind lane) throws IOException {
            int regionId = header.region();
            long first = header.first();
            int count = (int) header.count();
            long len = Integer.toUnsignedLong(header.payloadLength());
            // Validated: [first, first + count) lies inside the region and len == count * pageSize.
            MemorySegment data = dispatcher.pagesTarget(regionId, first, count, len);
            readFully(data, 0, len);
            long wire = FrameHeader.LENGTH + len;
            if (header.hasDataDigest()) {
                readFully(trailer, 0, Wire.DIGEST_LENGTH);
                dispatcher.verifyPages(trailer.get(Wire.U32, 0), regionId, first, count, data);
                wire += Wire.DIGEST_LENGTH;
            }
            dispatcher.pages(lane, regionId, first, count, data, wire);
        }

        /** PAGE_LIST: indices first (validated), then the data scattered straight into place with one recvmsg. */
        private void receivePageList(LaneKind lane) throws IOException {
            int regionId = header.region();
            int n = (int) header.count();
            long pageSize = layout.region(regionId).pageSize();
            long indexBytes = 8L * n;
            readFully(small, 0, indexBytes);
            dispatcher.validatePageList(header, small);
            if (listIov == null) {
                listIov = arena.allocate((long) Wire.MAX_LIST_PAGES * NativeSocket.IOVEC_BYTES, 8);
                listMsghdr = arena.allocate(NativeSocket.MSGHDR_BYTES, 8);
            }
            MemorySegment target = dispatcher.target(regionId);
            int runs = 0;
            for (int i = 0; i < n; ) {
                int j = FrameDispatcher.runEnd(small, i, n);
                long at = dispatcher.listTargetOffset(regionId, small.get(Wire.U64, 8L * i), i);
                NativeSocket.iovec(listIov, runs++, target, at, (j - i) * pageSize);
                i = j;
            }
            long dataBytes = n * pageSize;
            try {
                socket.recvvFully(listMsghdr, listIov, runs, dataBytes);
            } catch (EOFException e) {
                throw new EOFException("connection closed by the " + otherSide() + " in the middle of a PAGE_LIST frame (truncated stream): "
                        + e.getMessage());
            }
            MemorySegment staged = layout.region(regionId).placer() == null ? null : target.asSlice(0, dataBytes);
            long wire = FrameHeader.LENGTH + indexBytes + dataBytes;
            if (header.hasDataDigest()) {
                readFully(trailer, 0, Wire.DIGEST_LENGTH);
                dispatcher.verifyList(trailer.get(Wire.U32, 0), regionId, small, n, staged);
                wire += Wire.DIGEST_LENGTH;
            }
            dispatcher.pageList(lane, regionId, small, n, staged, wire);
        }

        private void readFully(MemorySegment dst, long offset, long len) throws IOException {
            try {
                if (len > 0 && socket.recvFully(dst, offset, len) < 0) {
                    throw new EOFException("connection closed by the " + otherSide() + " in the middle of a "
                            + FrameType.name(header.type()) + " frame (truncated stream)");
                }
            } catch (EOFException e) {
                if (e.getMessage() != null && e.getMessage().contains("truncated stream")) {
                    throw e;
                }
                throw new EOFException("connection closed by the " + otherSide() + " in the middle of a "
                        + FrameType.name(header.type()) + " frame (truncated stream): " + e.getMessage());
            }
        }

        @Override
        public void close() {
            dispatcher.close();
            arena.close();
        }
    }

    // ================================================================== the source's background lane

    @Override
    protected SourceLane sourceLane() {
        channelLanes = new StreamSourceLane[channels];
        for (int c = 0; c < channels; c++) {
            channelLanes[c] = new StreamSourceLane(c, 1);
        }
        mainLane = new StreamSourceLane(0, channels);
        return mainLane;
    }

    @Override
    public int backgroundChannels() {
        return role == Role.SOURCE ? channels : 1;
    }

    @Override
    public Lane backgroundChannel(int channel) {
        Objects.checkIndex(channel, backgroundChannels());
        if (role != Role.SOURCE) {
            return background();
        }
        StreamSourceLane[] lanes = channelLanes;
        if (lanes == null) {
            throw new IllegalStateException("background channels exist once the connection is open");
        }
        return lanes[channel];
    }

    /**
     * A producer of background work. The main lane ({@link #background()}) spreads page batches
     * over every channel's queue, taking turns and passing a full one by; a channel's lane
     * ({@link #backgroundChannel}) fills its own queue only. Each gathers its short runs into one
     * PAGE_LIST entry (single producer per lane: no lock needed for that).
     */
    private final class StreamSourceLane extends SourceLane {
        /** The queues this lane fills: {@code queues[first .. first + span)}. */
        private final int first;
        private final int span;
        /** The queue the next batch tries first (relative to {@code first}). */
        private int turn;
        private final BatchQueue pagesQueue = (region, from, n, bytes) -> offerEntry(BackgroundQueue.PAGES, region, from, n, bytes, null);
        private final long[] pending = new long[Wire.MAX_LIST_PAGES];
        private int pendingCount;
        private int pendingRegion = -1;

        StreamSourceLane(int first, int span) {
            super(StreamConnection.this);
            this.first = first;
            this.span = span;
        }

        private boolean isMain() {
            return this == mainLane;
        }

        /** Offers one entry to this lane's queues, the current one first; false when every one is full. */
        private boolean offerEntry(int kind, int region, long from, long count, long bytes, byte[] payload) {
            for (int i = 0; i < span; i++) {
                int q = first + (turn + i) % span;
                if (queues[q].offer(kind, region, from, count, bytes, payload)) {
                    turn = (turn + i + 1) % span; // the next batch goes to the next channel
                    return true;
                }
            }
            return false;
        }

        /** Hands the gathered list to a queue; false when every queue is full (nothing changed). */
        private boolean offerPending() {
            if (pendingCount == 0) {
                return true;
            }
            long bytes = pendingCount * layout.region(pendingRegion).pageSize();
            for (int i = 0; i < span; i++) {
                int q = first + (turn + i) % span;
                if (queues[q].offerList(pendingRegion, pending, pendingCount, bytes)) {
                    turn = (turn + i + 1) % span;
                    pendingCount = 0;
                    return true;
                }
            }
            return false;
        }

        /** Every other operation first hands over the gathered list, to keep the order. */
        private void flushPending() {
            while (!offerPending()) {
                stats.onBackPressure();
                waitForRoom();
            }
        }

        /** The main lane's barriers and drains: what the channel lanes gathered goes first (their producers are done). */
        private void flushAllPending() {
            for (StreamSourceLane c : channelLanes) {
                c.flushPending();
            }
            flushPending();
        }

        @Override
        protected long offer(RamRegion r, int regionId, long firstPage, long pageCount) {
            int listLimit = (int) validator.maxListPages(r.descriptor().pageShift());
            if (pageCount < listLimit / 2) {
                if ((pendingRegion != regionId || pendingCount + pageCount > listLimit) && !offerPending()) {
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
                return BACK_PRESSURED;
            }
            return offerBatches(r, regionId, firstPage, pageCount, maxPayload, pagesQueue);
        }

        @Override
        protected void waitForRoom() {
            // The queue this lane tries first; on the main lane the others were full too a moment ago.
            queues[first + turn].awaitSpace();
        }

        @Override
        protected void put(int type, int regionId, long from, long count, byte[] payload) {
            boolean runs = type == FrameType.ZERO_RUN || type == FrameType.SKIP_RUN;
            if (!isMain() && !runs) {
                throw new IllegalStateException("background channel " + first + ": " + FrameType.name(type)
                        + " goes on the background lane (Connection.background()), once every channel's producer is done");
            }
            if (type == FrameType.ROUND_END || type == FrameType.COMPLETE) {
                flushAllPending();
                for (BackgroundQueue q : queues) {
                    q.barrier(type, from);
                }
                return;
            }
            flushPending();
            if (type == FrameType.CONTROL) {
                // Always on channel 0: control messages keep their order among themselves.
                while (!queues[0].offer(type, regionId, from, count, 0, payload)) {
                    stats.onBackPressure();
                    queues[0].awaitSpace();
                }
                return;
            }
            while (!offerEntry(type, regionId, from, count, 0, payload)) {
                stats.onBackPressure();
                waitForRoom();
            }
        }

        @Override
        protected void drain() {
            if (isMain()) {
                flushAllPending();
                for (BackgroundQueue q : queues) {
                    q.awaitIdle();
                }
            } else {
                flushPending();
                queues[first].awaitIdle();
            }
        }
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + "[" + side() + ", peer=" + peer + ", channels=" + channels + ", dataDigest=" + dataDigest
                + ", urgentChannel=" + (sharedChannel ? "shared" : "dedicated") + "]";
    }
}
