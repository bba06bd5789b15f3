package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.zip.CRC32C;

/**
 * From validated frames to the handler, for one receiving thread (one stream): the same for every
 * transport, whatever brought the bytes. The transport decodes a header, calls {@link #validate},
 * then either {@link #frame} (no page data) or, once the page data has landed where
 * {@link #target}/{@link #targetOffset} said, {@link #pages} or {@link #pageList}.
 *
 * <h2>What it does</h2>
 * Page data of a region with a {@code PagePlacer} lands in a staging buffer and is handed to the
 * placer before the handler hears of it; a PAGE_LIST is reported run by run (consecutive indices);
 * data digests are checked over the bytes that landed ({@link #verifyPages}, {@link #verifyList});
 * a background stream counts its pages and checks the count its COMPLETE states; round ends and
 * COMPLETE pass the connection's barrier across streams; an ERROR fails the connection with the
 * peer's reason; nothing reaches the handler after a failure.
 *
 * <p>Not thread-safe: one dispatcher per receiving thread. Its staging buffer is allocated on first
 * use and freed by {@link #close()}, once that thread no longer uses it.
 */
public final class FrameDispatcher implements AutoCloseable {
    private final KitConnection c;
    private final MessageHandler handler;
    private final int stream;
    private final CRC32C crc = new CRC32C();
    private Arena arena; // made with the staging buffer
    private MemorySegment staging;
    private long pagesReceived;
    private boolean complete;
    private LaneKind lane = LaneKind.BACKGROUND; // of the frame validated last
    /** A PAGES frame landing in memory its region's placer reserved ({@link #pagesTarget}), until placed or abandoned. */
    private int reservedRegion = -1;
    private long reservedFirst;
    private int reservedCount;

    /**
     * @param connection the connection the frames belong to
     * @param stream the background stream this thread reads (0.. for a background stream; the urgent
     *        path's frames are dispatched with lane URGENT and never counted)
     */
    public FrameDispatcher(KitConnection connection, int stream) {
        this.c = connection;
        this.handler = connection.handler();
        this.stream = stream;
    }

    /**
     * Checks a decoded header against the negotiated layout, role and lane before any payload byte is read.
     *
     * @throws WireException naming the bad value and its bound, or a frame after this stream's COMPLETE
     */
    public void validate(FrameHeader h, LaneKind lane) {
        if (complete && lane == LaneKind.BACKGROUND) {
            throw new WireException(FrameType.name(h.type()) + " frame after COMPLETE on background stream " + stream);
        }
        c.validator.validate(h, c.role, lane);
        this.lane = lane;
        if (lane == LaneKind.BACKGROUND) {
            switch (h.type()) {
                case FrameType.PAGES, FrameType.ZERO_RUN, FrameType.SKIP_RUN -> c.claim(h.type(), h.region(), h.first(), h.count(), stream);
                default -> {
                }
            }
        }
    }

    /**
     * Checks a PAGE_LIST's indices (read from its payload) before any page data is read.
     *
     * @throws WireException when one lies outside the region or they do not ascend strictly
     */
    public void validatePageList(FrameHeader h, MemorySegment indices) {
        c.validator.validatePageList(h, indices);
        if (lane == LaneKind.BACKGROUND) {
            int n = (int) h.count();
            for (int i = 0; i < n; ) {
                int j = runEnd(indices, i, n);
                c.claim(h.type(), h.region(), indices.get(Wire.U64, 8L * i), j - i, stream);
                i = j;
            }
        }
    }

    /**
     * Dispatches a validated frame that carries no page data.
     *
     * @param payload a CONTROL's or ERROR's bytes (valid during the call), else ignored
     * @return false when the stream must stop here (the peer reported an error)
     */
    public boolean frame(FrameHeader h, LaneKind lane, MemorySegment payload) {
        if (c.failure() != null) {
            return false; // nothing after a failure reaches the handler
        }
        boolean urgent = lane == LaneKind.URGENT;
        switch (h.type()) {
            case FrameType.ZERO_RUN -> {
                c.stats.onReceived(0, FrameHeader.LENGTH, urgent);
                c.deliver(() -> handler.onZeroRun(lane, h.region(), h.first(), h.count()));
            }
            case FrameType.SKIP_RUN -> {
                c.stats.onReceived(0, FrameHeader.LENGTH, urgent);
                c.deliver(() -> handler.onSkipRun(lane, h.region(), h.first(), h.count()));
            }
            case FrameType.ROUND_END -> c.roundEnd(stream, h.first());
            case FrameType.PAGE_REQUEST -> {
                c.stats.onReceived(0, FrameHeader.LENGTH, true);
                c.deliver(() -> handler.onPageRequest(h.region(), h.first(), (int) h.count()));
            }
            case FrameType.COMPLETE -> {
                if (c.role == Role.DESTINATION) {
                    if (pagesReceived != h.count()) {
                        throw new WireException("COMPLETE on background stream " + stream + " says " + h.count()
                                + " pages were sent on it, but " + pagesReceived + " arrived");
                    }
                    complete = true;
                    c.streamComplete(stream);
                } else {
                    c.acknowledged();
                }
            }
            case FrameType.CONTROL -> {
                c.stats.onReceived(0, FrameHeader.LENGTH + payload.byteSize(), urgent);
                c.deliver(() -> handler.onControl(lane, payload));
            }
            case FrameType.ERROR -> {
                c.fail(new TransportException(Kind.PEER_ERROR, "the " + c.otherSide() + " " + c.peer + " reported an error: "
                        + PeerText.escape(payload)), FailureOrigin.PEER);
                return false;
            }
            case FrameType.HEARTBEAT -> {
                // liveness only: the transport noted the arrival
            }
            default -> throw new WireException("unexpected " + FrameType.name(h.type()) + " frame");
        }
        return true;
    }

    /** @return the segment page data of {@code regionId} lands in: its RAM, or (with a placer) the staging buffer */
    public MemorySegment target(int regionId) {
        RamRegion r = c.layout.region(regionId);
        return r.placer() == null ? r.memory() : staging();
    }

    /** @return where page {@code first} of a PAGES frame lands in {@link #target} */
    public long targetOffset(int regionId, long first) {
        RamRegion r = c.layout.region(regionId);
        return r.placer() == null ? first * r.pageSize() : 0;
    }

    /** @return where entry {@code i} (page {@code page}) of a PAGE_LIST lands in {@link #target} */
    public long listTargetOffset(int regionId, long page, int i) {
        RamRegion r = c.layout.region(regionId);
        return r.placer() == null ? page * r.pageSize() : i * r.pageSize();
    }

    /**
     * Where the data of a validated PAGES frame lands: its place in RAM; with a placer, memory the
     * placer reserved for it ({@link io.pagewire.transport.spi.PagePlacer#reserve}, background lane only) or the staging
     * buffer. A reservation ends with {@link #pages} or, if the frame never completes, {@link #close}.
     */
    public MemorySegment pagesTarget(int regionId, long first, int count, long len) {
        RamRegion r = c.layout.region(regionId);
        if (r.placer() == null) {
            return r.memory().asSlice(first * r.pageSize(), len);
        }
        // Background frames only: they all land before their stream's COMPLETE, so a reservation never
        // outlives the migration; an urgent answer is one page, staged.
        MemorySegment direct = lane == LaneKind.BACKGROUND ? r.placer().reserve(regionId, first, count) : null;
        if (direct != null) {
            if (direct.byteSize() != len) {
                r.placer().abandon(regionId, first, count);
                throw new IllegalStateException("the placer reserved " + direct.byteSize() + " bytes for " + len);
            }
            reservedRegion = regionId;
            reservedFirst = first;
            reservedCount = count;
            return direct;
        }
        return staging().asSlice(0, len);
    }

    /** Ends a reservation whose frame did not complete: its pages go back to the placer unplaced. */
    private void abandonReservation() {
        if (reservedRegion >= 0) {
            int regionId = reservedRegion;
            reservedRegion = -1;
            c.layout.region(regionId).placer().abandon(regionId, reservedFirst, reservedCount);
        }
    }

    private MemorySegment staging() {
        if (staging == null) {
            // Shared, made on first use: a dispatcher may be created on one thread, used on its receiving
            // thread and closed by the connection's release on a third.
            arena = Arena.ofShared();
            staging = arena.allocate(c.maxPayload, 4096);
        }
        return staging;
    }

    /**
     * Checks a PAGES frame's digest over the bytes that landed.
     *
     * @throws WireException on a mismatch, naming the pages and both values
     */
    public void verifyPages(int expected, int regionId, long first, int count, MemorySegment data) {
        int actual = Wire.crc32c(crc, data, 0, data.byteSize());
        if (expected != actual) {
            throw new WireException(String.format("data digest mismatch on PAGES region %d pages [%d, %d): frame says 0x%08x,"
                    + " data gives 0x%08x", regionId, first, first + count, expected, actual));
        }
    }

    /**
     * Checks a PAGE_LIST's digest, which covers the indices and then the pages in index order.
     *
     * @param staged the pages as they landed in order, or null when they landed in place in RAM
     * @throws WireException on a mismatch
     */
    public void verifyList(int expected, int regionId, MemorySegment indices, int n, MemorySegment staged) {
        RamRegion r = c.layout.region(regionId);
        long ps = r.pageSize();
        crc.reset();
        Wire.crc32cUpdate(crc, indices, 0, 8L * n);
        if (staged != null) {
            Wire.crc32cUpdate(crc, staged, 0, n * ps);
        } else {
            for (int i = 0; i < n; ) {
                long first = indices.get(Wire.U64, 8L * i);
                int j = runEnd(indices, i, n);
                Wire.crc32cUpdate(crc, r.memory(), first * ps, (j - i) * ps);
                i = j;
            }
        }
        if (expected != (int) crc.getValue()) {
            throw new WireException(String.format("data digest mismatch on PAGE_LIST region %d (%d pages from %d): frame says 0x%08x,"
                    + " data gives 0x%08x", regionId, n, indices.get(Wire.U64, 0), expected, (int) crc.getValue()));
        }
    }

    /**
     * The pages of a PAGES frame have landed (and their digest, if any, was checked): hands them to the
     * region's placer, counts them, reports them.
     *
     * @param data the pages as they landed (a view of RAM, or of the staging buffer for a placer)
     * @param wireBytes what the frame took on the medium, for statistics
     */
    public void pages(LaneKind lane, int regionId, long first, int count, MemorySegment data, long wireBytes) {
        if (c.failure() != null) {
            abandonReservation();
            return;
        }
        reservedRegion = -1; // placed below (the placer knows its own memory)
        RamRegion r = c.layout.region(regionId);
        if (r.placer() != null) {
            c.deliver(() -> r.placer().place(regionId, first, count, data));
        }
        if (lane == LaneKind.BACKGROUND) {
            pagesReceived += count;
        }
        c.stats.onReceived(count, wireBytes, lane == LaneKind.URGENT);
        c.deliver(() -> handler.onPages(lane, regionId, first, count));
    }

    /**
     * The pages of a PAGE_LIST have landed: placed and reported run by run (consecutive indices).
     *
     * @param indices the validated indices, big-endian u64, {@code n} of them
     * @param staged the pages in index order where they landed for a placer, or null when in place in RAM
     */
    public void pageList(LaneKind lane, int regionId, MemorySegment indices, int n, MemorySegment staged, long wireBytes) {
        if (c.failure() != null) {
            return;
        }
        RamRegion r = c.layout.region(regionId);
        long ps = r.pageSize();
        if (lane == LaneKind.BACKGROUND) {
            pagesReceived += n;
        }
        c.stats.onReceived(n, wireBytes, lane == LaneKind.URGENT);
        for (int i = 0; i < n; ) {
            long first = indices.get(Wire.U64, 8L * i);
            int j = runEnd(indices, i, n);
            int count = j - i;
            if (r.placer() != null) {
                MemorySegment data = staged.asSlice(i * ps, count * ps);
                c.deliver(() -> r.placer().place(regionId, first, count, data));
            }
            c.deliver(() -> handler.onPages(lane, regionId, first, count));
            i = j;
        }
    }

    /** @return true once this background stream's COMPLETE arrived (its end of stream is orderly) */
    public boolean complete() {
        return complete;
    }

    /** @return the end (exclusive) of the run of consecutive indices that starts at entry {@code i} */
    public static int runEnd(MemorySegment indices, int i, int n) {
        long first = indices.get(Wire.U64, 8L * i);
        int j = i + 1;
        while (j < n && indices.get(Wire.U64, 8L * j) == first + (j - i)) {
            j++;
        }
        return j;
    }

    /** Frees the staging buffer; call once the receiving thread no longer uses this dispatcher. */
    @Override
    public void close() {
        abandonReservation();
        if (arena != null) {
            arena.close();
            arena = null;
            staging = null;
        }
    }
}
