package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Publication;
import io.aeron.logbuffer.BufferClaim;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

/**
 * Writes pagewire frames into one Aeron publication. Three paths, chosen per frame by its length:
 * <ol>
 * <li><b>claim</b> (frame fits one MTU, the common case for 4 KiB pages): {@code tryClaim} a range of the term
 *     buffer, write the header, copy the pages straight from guest RAM into it, and checksum the copy (so the digest
 *     describes exactly the bytes sent, even when the guest changes a page meanwhile). One copy, no staging.</li>
 * <li><b>offer</b> (frame above one MTU, up to Aeron's largest message, term length / 8): {@code offer} the header
 *     and an {@link UnsafeBuffer} over the pages' address; Aeron fragments it. With a data digest the pages are
 *     first copied to a staging buffer and checksummed there.</li>
 * <li><b>split</b> (frame above Aeron's largest message, e.g. 2 MiB pages on a small term): the frame continues over
 *     several consecutive messages. It is started only when the publication window has room for all of it, so back
 *     pressure cannot strike between its messages; a frame larger than the whole window is started when one message
 *     fits and then waits out back pressure between messages (through the {@link Waiter}, so the wait is bounded).</li>
 * </ol>
 * The {@code try} methods return the new stream position, or a negative {@link Publication} code when nothing was
 * written ({@code BACK_PRESSURED}, {@code ADMIN_ACTION}: try again; {@code NOT_CONNECTED}, {@code CLOSED},
 * {@code MAX_POSITION_EXCEEDED}: the stream is lost). Allocates nothing per frame. Not thread-safe: one writer at a
 * time (the background producer; urgent writers under the connection's urgent lock).
 */
final class FrameSender {
    /** Waits between the messages of a split frame; throws when the connection failed or the wait is too long. */
    interface Waiter {
        void idle(long code, long sinceNs);
    }

    private final ExclusivePublication pub;
    private final boolean digest;
    private final int maxPagePayload;
    private final Waiter waiter;
    private final BufferClaim claim = new BufferClaim();
    private final byte[] headerBytes = new byte[FrameHeader.LENGTH];
    private final FrameHeader header = new FrameHeader(MemorySegment.ofArray(headerBytes));
    private final UnsafeBuffer headerBuffer = new UnsafeBuffer(headerBytes);
    private final UnsafeBuffer source = new UnsafeBuffer(0, 0);
    private final BufferViews views = new BufferViews();
    private final CRC32C crc = new CRC32C();
    private final int maxPayloadLength;
    private final int maxMessageLength;
    private final long windowBytes;
    private MemorySegment staging; // page data + digest, for the offer and split paths; made on first use
    private UnsafeBuffer stagingBuffer;
    private java.nio.ByteBuffer stagingBytes;
    private long lastFrameBytes;
    /** {@code frame-mac=on}: the MAC trailing every frame; null: off. */
    private final FrameMac mac;
    private final int macBytes;
    /** Test fault injection: flip a payload byte of the next frame after its MAC is made (an on-path change). */
    private volatile boolean tamperNext;

    FrameSender(ExclusivePublication pub, boolean digest, int maxPagePayload, long windowBytes, Waiter waiter) {
        this(pub, digest, maxPagePayload, windowBytes, waiter, null);
    }

    /** @param mac the MAC every frame carries ({@code frame-mac=on}), or null */
    FrameSender(ExclusivePublication pub, boolean digest, int maxPagePayload, long windowBytes, Waiter waiter, FrameMac mac) {
        this.mac = mac;
        this.macBytes = mac == null ? 0 : FrameMac.LENGTH;
        this.pub = pub;
        this.windowBytes = windowBytes;
        this.digest = digest;
        this.maxPagePayload = maxPagePayload;
        this.waiter = waiter;
        this.maxPayloadLength = pub.maxPayloadLength();
        this.maxMessageLength = pub.maxMessageLength();
    }

    /** @return the publication */
    ExclusivePublication publication() {
        return pub;
    }

    /** @return the wire length of the last frame written */
    long lastFrameBytes() {
        return lastFrameBytes;
    }

    /** @return how many pages of this size go in one PAGES frame: as many as fit one datagram, else one batch */
    int pagesPerFrame(long pageSize) {
        long batch = Math.max(1, maxPagePayload / pageSize);
        long inOneMtu = (maxPayloadLength - FrameHeader.LENGTH - (digest ? 4 : 0) - macBytes) / pageSize;
        return (int) (inOneMtu >= 1 ? Math.min(inOneMtu, batch) : batch);
    }

    /** Writes PAGES for {@code [first, first + count)} of a region (already bounds-checked). */
    long tryPages(RamRegion region, int regionId, long first, int count) {
        long len = count * region.pageSize();
        header.encode(FrameType.PAGES, digest ? FrameHeader.FLAG_DATA_DIGEST : 0, regionId, first, count, (int) len);
        return tryFrame(region.memory(), first * region.pageSize(), (int) len, digest);
    }

    /** Writes a frame without payload. */
    long tryHeaderOnly(int type, int region, long first, long count) {
        header.encode(type, 0, region, first, count, 0);
        return tryFrame(null, 0, 0, false);
    }

    /** Writes a frame whose payload is {@code payload} (CONTROL, ERROR); heap or native. */
    long tryPayload(int type, MemorySegment payload) {
        int len = (int) payload.byteSize();
        header.encode(type, 0, 0, 0, 0, len);
        return tryFrame(payload, 0, len, false);
    }

    private long tryFrame(MemorySegment src, long srcOffset, int len, boolean withDigest) {
        int frameLength = FrameHeader.LENGTH + len + (withDigest ? 4 : 0) + macBytes;
        long result;
        if (frameLength <= maxPayloadLength) {
            result = claimed(src, srcOffset, len, withDigest, frameLength);
        } else if (frameLength <= maxMessageLength) {
            result = offered(src, srcOffset, len, withDigest);
        } else {
            result = split(src, srcOffset, len, withDigest, frameLength);
        }
        if (result > 0) {
            lastFrameBytes = frameLength;
            if (mac != null) {
                mac.sent();
            }
        }
        return result;
    }

    private long claimed(MemorySegment src, long srcOffset, int len, boolean withDigest, int frameLength) {
        long result = pub.tryClaim(frameLength, claim);
        if (result <= 0) {
            return result;
        }
        boolean committed = false;
        try {
            MutableDirectBuffer b = claim.buffer();
            int at = claim.offset();
            b.putBytes(at, headerBuffer, 0, FrameHeader.LENGTH);
            if (len > 0) {
                int data = at + FrameHeader.LENGTH;
                MemorySegment.copy(src, srcOffset, views.segment(b), views.offset(b, data), len);
                if (withDigest) {
                    crc.reset();
                    views.crc(crc, b, data, len);
                    b.putInt(data + len, (int) crc.getValue(), ByteOrder.BIG_ENDIAN);
                }
            }
            if (mac != null) {
                MemorySegment claimed = views.segment(b);
                long start = views.offset(b, at);
                mac.begin();
                mac.update(claimed, start, frameLength - macBytes);
                mac.finish(claimed, start + frameLength - macBytes);
            }
            if (tamperNext && len > 0) {
                tamperNext = false;
                b.putByte(at + FrameHeader.LENGTH, (byte) ~b.getByte(at + FrameHeader.LENGTH));
            }
            claim.commit();
            committed = true;
            return result;
        } finally {
            if (!committed) {
                claim.abort(); // a failed copy must not leave a hole that stalls the stream
            }
        }
    }

    /** @return a buffer holding the payload (and digest): the source itself when it is native and needs no digest */
    private DirectBuffer payloadBuffer(MemorySegment src, long srcOffset, int len, boolean withDigest) {
        if (!withDigest && mac == null && src.isNative()) {
            source.wrap(src.address() + srcOffset, len);
            return source;
        }
        // With a MAC, staged too: the MAC must describe the bytes sent, and guest RAM may change under a send.
        ensureStaging(len + 4 + macBytes);
        MemorySegment.copy(src, srcOffset, staging, 0, len);
        if (withDigest) {
            crc.reset();
            crc.update(stagingBytes.clear().limit(len));
            staging.set(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), len, (int) crc.getValue());
        }
        if (mac != null) {
            int body = len + (withDigest ? 4 : 0);
            mac.begin();
            mac.update(headerBytes, 0, FrameHeader.LENGTH);
            mac.update(staging, 0, body);
            mac.finish(staging, body);
            if (tamperNext && len > 0) {
                tamperNext = false;
                staging.set(ValueLayout.JAVA_BYTE, 0, (byte) ~staging.get(ValueLayout.JAVA_BYTE, 0));
            }
        }
        return stagingBuffer;
    }

    /** Test fault injection: the next frame with a payload has one byte flipped after its MAC was made, as an on-path attacker would. */
    void tamperWithNextFrame() {
        tamperNext = true;
    }

    private void ensureStaging(int bytes) {
        if (staging == null || staging.byteSize() < bytes) {
            int size = Math.max(bytes, Math.max(maxPagePayload, io.pagewire.transport.spi.wire.Wire.MAX_CONTROL_BYTES) + 4 + macBytes);
            staging = Arena.ofAuto().allocate(size, 64);
            stagingBuffer = new UnsafeBuffer(staging.address(), size);
            stagingBytes = staging.asByteBuffer();
        }
    }

    private long offered(MemorySegment src, long srcOffset, int len, boolean withDigest) {
        DirectBuffer payload = payloadBuffer(src, srcOffset, len, withDigest);
        return pub.offer(headerBuffer, 0, FrameHeader.LENGTH, payload, 0, len + (withDigest ? 4 : 0) + macBytes, null);
    }

    private long split(MemorySegment src, long srcOffset, int len, boolean withDigest, int frameLength) {
        // Start only when the window holds the whole frame plus a message of padding at a term end, so back
        // pressure cannot strike between its messages.
        long fragments = frameLength / Math.max(1, maxPayloadLength) + 2;
        long need = frameLength + fragments * 32 + maxMessageLength;
        if (need > windowBytes) {
            need = maxMessageLength; // never fits whole: start when a message fits, wait between the others
        }
        long window = pub.availableWindow();
        if (window < need) {
            return window < 0 ? window : (pub.isConnected() ? Publication.BACK_PRESSURED : Publication.NOT_CONNECTED);
        }
        DirectBuffer payload = payloadBuffer(src, srcOffset, len, withDigest);
        int total = len + (withDigest ? 4 : 0) + macBytes;
        int first = maxMessageLength - FrameHeader.LENGTH;
        long result = offerAll(() -> pub.offer(headerBuffer, 0, FrameHeader.LENGTH, payload, 0, first, null));
        if (result < 0) {
            return result; // nothing written yet
        }
        for (int done = first; done < total; ) {
            int at = done;
            int n = Math.min(maxMessageLength, total - done);
            result = offerAll(() -> pub.offer(payload, at, n, null));
            if (result < 0) {
                // Mid-frame: the stream cannot be continued; the caller fails the connection.
                return result;
            }
            done += n;
        }
        return result;
    }

    /** Offers until written, retrying back pressure and admin actions through the waiter. */
    private long offerAll(java.util.function.LongSupplier offer) {
        long since = System.nanoTime();
        while (true) {
            long r = offer.getAsLong();
            if (r > 0 || (r != Publication.BACK_PRESSURED && r != Publication.ADMIN_ACTION)) {
                return r;
            }
            waiter.idle(r, since);
        }
    }

    /** Forgets cached views of the publication's buffers. */
    void close() {
        views.clear();
    }
}
