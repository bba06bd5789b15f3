package io.pagewire.transport.aeron;

import io.aeron.logbuffer.FragmentHandler;
import io.aeron.logbuffer.Header;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.kit.FrameDispatcher;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import org.agrona.DirectBuffer;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

/**
 * Reads the frame stream of one image (one lane stream) after the handshake, fragment by fragment, without
 * reassembling messages: the fragments of a stream, in order, are the byte stream of {@code docs/wire-protocol.md}
 * (a frame may span fragments and messages). Page data goes from Aeron's term buffer straight into destination RAM
 * (one copy; or into the dispatcher's staging buffer for a region with a placer). PAGE_LIST frames (scattered pages; this transport
 * does not need to send them, since Aeron already packs small messages into one datagram) are received as the wire
 * format says: indices first, checked, then each page straight into its place.
 *
 * <h2>Validation before any write</h2>
 * Each 32-byte header is collected, CRC-checked ({@link FrameHeader#decode}) and validated by the kit's
 * {@link FrameDispatcher} against the negotiated layout, role and lane before a payload byte is read; the dispatcher
 * then places (with a region's placer), counts and reports what arrived. When a PAGES
 * frame and its digest lie in one fragment (every frame this transport sends) the digest is checked before the
 * pages are written; a frame that spans fragments is written as it arrives, inside the range its valid header
 * claimed, and its digest is checked at the end.
 *
 * <p>Buffers are allocated once; nothing per frame. Not thread-safe: one reader per image, used by the thread that
 * polls it. {@code Image.poll} hands exceptions thrown by a fragment handler to the client's error handler and
 * moves on, so the reader catches them itself ({@link WireException} for bad input, anything a handler throws),
 * ignores every later fragment, and {@link #poll} rethrows on the polling thread.
 */
final class FrameReader implements FragmentHandler {
    private static final int HEADER = 0;
    private static final int PAGES = 1;
    private static final int DIGEST = 2;
    private static final int SMALL = 3;
    private static final int LIST_INDICES = 4;
    private static final int LIST_DATA = 5;
    private static final int MAC = 6;
    // What to do once a frame's MAC checked out (frame-mac=on).
    private static final int DONE_PAGES = 1;
    private static final int DONE_LIST = 2;
    private static final int DONE_SMALL = 3;
    private static final int DONE_HEADER_ONLY = 4;

    private final RamLayout layout;
    private final FrameDispatcher dispatcher;
    private final LaneKind lane;
    private final byte[] headerBytes = new byte[FrameHeader.LENGTH];
    private final FrameHeader header = new FrameHeader(MemorySegment.ofArray(headerBytes));
    private final byte[] digestBytes = new byte[Wire.DIGEST_LENGTH];
    private final MemorySegment small = Arena.ofAuto().allocate(Wire.MAX_CONTROL_BYTES, 64);
    private final MemorySegment indices = Arena.ofAuto().allocate(8L * Wire.MAX_LIST_PAGES, 8);
    private final long[] listPages = new long[Wire.MAX_LIST_PAGES];
    private final BufferViews views = new BufferViews();
    private final CRC32C crc = new CRC32C();

    private int state = HEADER;
    private int have;            // bytes of the current part (header, digest, small payload) collected
    private long payloadLength;  // of the current frame
    private long remaining;      // payload bytes still to come
    private MemorySegment target;
    private long targetOffset;
    private RamRegion region;
    private long pageSize;
    private int listIndex;       // PAGE_LIST: the page being received
    private long listPageDone;   // PAGE_LIST: bytes of that page received
    private RuntimeException failed;
    /** {@code frame-mac=on}: the MAC trailing every frame; null: off. */
    private final FrameMac mac;
    private final int macBytes;
    private final byte[] macReceived = new byte[FrameMac.LENGTH];
    private int pendingDone;      // frame-mac: what completes the frame once its MAC checked out
    private boolean digestPending; // frame-mac: the digest is checked after the MAC (a changed frame is a MAC failure)
    private int digestExpected;
    private int digestActual;

    FrameReader(RamLayout layout, FrameDispatcher dispatcher, LaneKind lane) {
        this(layout, dispatcher, lane, null);
    }

    /** @param mac the MAC every frame carries ({@code frame-mac=on}), or null */
    FrameReader(RamLayout layout, FrameDispatcher dispatcher, LaneKind lane, FrameMac mac) {
        this.mac = mac;
        this.macBytes = mac == null ? 0 : FrameMac.LENGTH;
        this.layout = layout;
        this.dispatcher = dispatcher;
        this.lane = lane;
    }

    /** @return true when a frame is partly read (the stream must not end here) */
    boolean midFrame() {
        return state != HEADER || have != 0;
    }

    /**
     * Polls an image through this reader.
     *
     * @return fragments read
     * @throws RuntimeException what the stream or a handler did wrong (the reader is dead afterwards)
     */
    int poll(io.aeron.Image image, int fragmentLimit) {
        int n = image.poll(this, fragmentLimit);
        if (failed != null) {
            throw failed;
        }
        return n;
    }

    @Override
    public void onFragment(DirectBuffer buffer, int offset, int length, Header aeronHeader) {
        if (failed != null) {
            return;
        }
        try {
            read(buffer, offset, length);
        } catch (RuntimeException e) {
            failed = e;
        }
    }

    private void read(DirectBuffer buffer, int offset, int length) {
        int pos = offset;
        int end = offset + length;
        while (pos < end) {
            switch (state) {
                case HEADER -> {
                    int n = Math.min(FrameHeader.LENGTH - have, end - pos);
                    buffer.getBytes(pos, headerBytes, have, n);
                    have += n;
                    pos += n;
                    if (have == FrameHeader.LENGTH) {
                        have = 0;
                        if (mac != null) {
                            mac.begin();
                            mac.update(headerBytes, 0, FrameHeader.LENGTH);
                        }
                        pos = onHeader(buffer, pos, end);
                    }
                }
                case PAGES -> {
                    int n = (int) Math.min(remaining, end - pos);
                    if (header.hasDataDigest()) {
                        views.crc(crc, buffer, pos, n);
                    }
                    macUpdate(buffer, pos, n);
                    MemorySegment.copy(views.segment(buffer), views.offset(buffer, pos), target,
                            targetOffset + (payloadLength - remaining), n);
                    remaining -= n;
                    pos += n;
                    if (remaining == 0) {
                        if (header.hasDataDigest()) {
                            state = DIGEST;
                        } else {
                            done(DONE_PAGES);
                        }
                    }
                }
                case DIGEST -> {
                    int n = Math.min(Wire.DIGEST_LENGTH - have, end - pos);
                    buffer.getBytes(pos, digestBytes, have, n);
                    macUpdate(buffer, pos, n);
                    have += n;
                    pos += n;
                    if (have == Wire.DIGEST_LENGTH) {
                        have = 0;
                        int expected = MemorySegment.ofArray(digestBytes).get(Wire.U32, 0);
                        if (mac == null) {
                            checkDigest(expected, (int) crc.getValue());
                        } else {
                            digestPending = true;
                            digestExpected = expected;
                            digestActual = (int) crc.getValue();
                        }
                        done(header.type() == FrameType.PAGE_LIST ? DONE_LIST : DONE_PAGES);
                    }
                }
                case LIST_INDICES -> {
                    long want = 8 * header.count();
                    int n = (int) Math.min(want - have, end - pos);
                    if (header.hasDataDigest()) {
                        views.crc(crc, buffer, pos, n);
                    }
                    macUpdate(buffer, pos, n);
                    MemorySegment.copy(views.segment(buffer), views.offset(buffer, pos), indices, have, n);
                    have += n;
                    pos += n;
                    if (have == want) {
                        have = 0;
                        indicesDone();
                    }
                }
                case LIST_DATA -> {
                    int n = (int) Math.min(pageSize - listPageDone, end - pos);
                    if (header.hasDataDigest()) {
                        views.crc(crc, buffer, pos, n);
                    }
                    macUpdate(buffer, pos, n);
                    MemorySegment.copy(views.segment(buffer), views.offset(buffer, pos), target, listTarget(listIndex) + listPageDone, n);
                    listPageDone += n;
                    pos += n;
                    if (listPageDone == pageSize) {
                        listPageDone = 0;
                        if (++listIndex == header.count()) {
                            if (header.hasDataDigest()) {
                                state = DIGEST;
                            } else {
                                done(DONE_LIST);
                            }
                        }
                    }
                }
                case SMALL -> {
                    int n = (int) Math.min(payloadLength - have, end - pos);
                    MemorySegment.copy(views.segment(buffer), views.offset(buffer, pos), small, have, n);
                    macUpdate(buffer, pos, n);
                    have += n;
                    pos += n;
                    if (have == payloadLength) {
                        have = 0;
                        done(DONE_SMALL);
                    }
                }
                case MAC -> {
                    int n = Math.min(FrameMac.LENGTH - have, end - pos);
                    buffer.getBytes(pos, macReceived, have, n);
                    have += n;
                    pos += n;
                    if (have == FrameMac.LENGTH) {
                        have = 0;
                        if (!mac.verify(macReceived, 0)) {
                            throw mac.mismatch(describe());
                        }
                        if (digestPending) {
                            digestPending = false;
                            checkDigest(digestExpected, digestActual);
                        }
                        complete(pendingDone);
                    }
                }
                default -> throw new IllegalStateException("reader state " + state);
            }
        }
    }

    /** A whole header arrived: check it, then route what follows. @return the new position */
    private int onHeader(DirectBuffer buffer, int pos, int end) {
        header.decode();
        dispatcher.validate(header, lane);
        payloadLength = Integer.toUnsignedLong(header.payloadLength());
        switch (header.type()) {
            case FrameType.PAGES -> {
                // Validated: [first, first + count) lies inside the region and the length is count x page size.
                region = layout.region(header.region());
                pageSize = region.pageSize();
                setTarget(header.first());
                remaining = payloadLength;
                boolean withDigest = header.hasDataDigest();
                long whole = payloadLength + (withDigest ? Wire.DIGEST_LENGTH : 0) + macBytes;
                if (end - pos >= whole) {
                    // The whole frame is in this fragment: check the MAC and the digest before writing a byte.
                    int len = (int) payloadLength;
                    verifyWhole(buffer, pos, (int) whole - macBytes);
                    if (withDigest) {
                        crc.reset();
                        views.crc(crc, buffer, pos, len);
                        checkDigest(buffer.getInt(pos + len, ByteOrder.BIG_ENDIAN), (int) crc.getValue());
                    }
                    MemorySegment.copy(views.segment(buffer), views.offset(buffer, pos), target, targetOffset, len);
                    remaining = 0;
                    pagesDone();
                    return (int) (pos + whole);
                }
                crc.reset();
                state = PAGES;
            }
            case FrameType.PAGE_LIST -> {
                // Validated: region, 1 <= n <= the list limit, length n x (page size + 8). The indices come first
                // and are checked before a byte of page data is read.
                region = layout.region(header.region());
                pageSize = region.pageSize();
                setTarget(0);
                crc.reset();
                int n = (int) header.count();
                long whole = payloadLength + (header.hasDataDigest() ? Wire.DIGEST_LENGTH : 0) + macBytes;
                if (end - pos >= whole) {
                    // Whole frame in this fragment: indices, then MAC and digest, then the writes.
                    MemorySegment.copy(views.segment(buffer), views.offset(buffer, pos), indices, 0, 8L * n);
                    dispatcher.validatePageList(header, indices);
                    verifyWhole(buffer, pos, (int) whole - macBytes);
                    if (header.hasDataDigest()) {
                        views.crc(crc, buffer, pos, (int) payloadLength);
                        checkDigest(buffer.getInt(pos + (int) payloadLength, ByteOrder.BIG_ENDIAN), (int) crc.getValue());
                    }
                    readIndices(n);
                    MemorySegment src = views.segment(buffer);
                    long data = views.offset(buffer, pos) + 8L * n;
                    for (int i = 0; i < n; i++) {
                        MemorySegment.copy(src, data + i * pageSize, target, listTarget(i), pageSize);
                    }
                    listDone();
                    return (int) (pos + whole);
                }
                have = 0;
                state = LIST_INDICES;
            }
            case FrameType.CONTROL, FrameType.ERROR -> {
                if (payloadLength == 0) {
                    done(DONE_SMALL);
                } else {
                    state = SMALL;
                }
            }
            default -> done(DONE_HEADER_ONLY);
        }
        return pos;
    }

    private void macUpdate(DirectBuffer buffer, int pos, int n) {
        if (mac != null) {
            mac.update(views.segment(buffer), views.offset(buffer, pos), n);
        }
    }

    /** frame-mac: a whole frame of {@code body} bytes after its header at {@code pos}, its MAC right after: checked now. */
    private void verifyWhole(DirectBuffer buffer, int pos, int body) {
        if (mac != null) {
            macUpdate(buffer, pos, body);
            buffer.getBytes(pos + body, macReceived, 0, FrameMac.LENGTH);
            if (!mac.verify(macReceived, 0)) {
                throw mac.mismatch(describe());
            }
        }
    }

    /** The frame's payload (and digest) are in: with a MAC, it is read and checked before the frame counts. */
    private void done(int what) {
        if (mac == null) {
            complete(what);
        } else {
            pendingDone = what;
            have = 0;
            state = MAC;
        }
    }

    private void complete(int what) {
        switch (what) {
            case DONE_PAGES -> pagesDone();
            case DONE_LIST -> listDone();
            case DONE_SMALL -> {
                state = HEADER;
                dispatcher.frame(header, lane, small.asSlice(0, payloadLength));
            }
            case DONE_HEADER_ONLY -> {
                state = HEADER;
                dispatcher.frame(header, lane, null);
            }
            default -> throw new IllegalStateException("frame completion " + what);
        }
    }

    /** @return the current frame, for messages */
    private String describe() {
        return FrameType.name(header.type()) + " frame (region " + header.region() + ", first " + header.first() + ", count "
                + header.count() + ")";
    }

    /** Pages go to RAM at {@code first}, or to the dispatcher's staging buffer when the region has a placer. */
    private void setTarget(long first) {
        target = dispatcher.target(header.region());
        targetOffset = dispatcher.targetOffset(header.region(), first);
    }

    /** @return where page {@code i} of the current PAGE_LIST goes in {@link #target} */
    private long listTarget(int i) {
        return dispatcher.listTargetOffset(header.region(), listPages[i], i);
    }

    private void readIndices(int n) {
        for (int i = 0; i < n; i++) {
            listPages[i] = indices.get(Wire.U64, 8L * i);
        }
    }

    private void indicesDone() {
        dispatcher.validatePageList(header, indices);
        readIndices((int) header.count());
        listIndex = 0;
        listPageDone = 0;
        state = LIST_DATA;
    }

    /** A whole PAGE_LIST is placed: the dispatcher reports it per run of consecutive pages. */
    private void listDone() {
        state = HEADER;
        long wire = FrameHeader.LENGTH + payloadLength + (header.hasDataDigest() ? Wire.DIGEST_LENGTH : 0) + macBytes;
        MemorySegment staged = region.placer() == null ? null : target.asSlice(0, header.count() * pageSize);
        dispatcher.pageList(lane, header.region(), indices, (int) header.count(), staged, wire);
    }

    private void checkDigest(int expected, int actual) {
        if (expected != actual) {
            throw new WireException(String.format("data digest mismatch on PAGES region %d pages [%d, %d): frame says 0x%08x,"
                    + " data gives 0x%08x", header.region(), header.first(), header.first() + header.count(), expected, actual));
        }
    }

    private void pagesDone() {
        state = HEADER;
        dispatcher.pages(lane, header.region(), header.first(), (int) header.count(), target.asSlice(targetOffset, payloadLength),
                FrameHeader.LENGTH + payloadLength + (header.hasDataDigest() ? Wire.DIGEST_LENGTH : 0) + macBytes);
    }

    /** Forgets cached views of the image's buffers. */
    void close() {
        views.clear();
    }
}
