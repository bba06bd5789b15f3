package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.wire.WireException;

import javax.crypto.Mac;
import javax.crypto.ShortBufferException;
import javax.crypto.spec.SecretKeySpec;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.security.GeneralSecurityException;

/**
 * The per-frame MAC of {@code frame-mac=on}: HMAC-SHA256, truncated to {@link #LENGTH} bytes, over the
 * frame's number on its stream (8 bytes, big-endian, from 0) and every byte of the frame (header,
 * payload, digest). It trails the frame:
 * <pre>
 * | frame header (32) | payload | [digest (4)] | MAC (16) |
 * </pre>
 * One key per direction and stream, derived from the authenticated handshake's session key
 * ({@link AuthExchange.Result#derive}), so a frame cannot be moved to the other stream or direction;
 * the frame number stops replays and reordering (an Aeron stream delivers in order, so both sides count
 * alike). A datagram spoofed into the stream changes the bytes of some frame, which then fails.
 *
 * <p>Not thread-safe: one per stream end, used by its writer or reader. Allocates nothing per frame
 * (beyond the JDK's {@link Mac} internals).
 */
final class FrameMac {
    /** Bytes of the MAC after each frame. */
    static final int LENGTH = 16;

    private final Mac mac;
    private final String stream;
    private final byte[] number = new byte[8];
    private final byte[] out = new byte[32];
    private long frames;

    /**
     * @param auth the session's authentication
     * @param from "source" or "destination": who writes this stream
     * @param stream "urgent" or "background", also for messages
     */
    FrameMac(AuthExchange.Result auth, String from, String stream) {
        this.stream = from + "'s " + stream + " stream";
        try {
            this.mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(auth.derive("frame-mac " + from + " " + stream), "HmacSHA256"));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
        }
    }

    /** @return frames sent or verified so far (the number of the next one) */
    long frames() {
        return frames;
    }

    /** Starts the MAC of the next frame (again, for a frame whose write must be retried). */
    void begin() {
        mac.reset();
        long n = frames;
        for (int i = 7; i >= 0; i--) {
            number[i] = (byte) n;
            n >>>= 8;
        }
        mac.update(number);
    }

    void update(byte[] b, int offset, int length) {
        mac.update(b, offset, length);
    }

    void update(MemorySegment segment, long offset, long length) {
        if (length > 0) {
            mac.update(segment.asSlice(offset, length).asByteBuffer());
        }
    }

    /** Writes the MAC of the frame begun into {@code dst} at {@code offset}; the frame counts once {@link #sent()}. */
    void finish(MemorySegment dst, long offset) {
        doFinal();
        MemorySegment.copy(out, 0, dst, ValueLayout.JAVA_BYTE, offset, LENGTH);
    }

    /** The frame whose MAC was {@link #finish finished} went out. */
    void sent() {
        frames++;
    }

    /**
     * Checks the MAC received after the frame begun; a match counts the frame.
     *
     * @return false when it does not match ({@link #mismatch} says so)
     */
    boolean verify(byte[] received, int offset) {
        doFinal();
        int diff = 0; // constant time, as MessageDigest.isEqual, without copying
        for (int i = 0; i < LENGTH; i++) {
            diff |= out[i] ^ received[offset + i];
        }
        if (diff != 0) {
            return false;
        }
        frames++;
        return true;
    }

    /** @return the error of a frame whose MAC did not match: changed, spoofed, replayed or reordered */
    WireException mismatch(String what) {
        return new WireException("frame MAC mismatch on " + what + " (frame " + frames + " of the " + stream + "): the frame was"
                + " changed on the way, replayed, or did not come from the authenticated peer (a spoofed datagram); the connection"
                + " is failed (frame-mac=on)");
    }

    private void doFinal() {
        try {
            mac.doFinal(out, 0);
        } catch (ShortBufferException e) {
            throw new IllegalStateException("a 32-byte buffer holds HMAC-SHA256", e);
        }
    }
}
