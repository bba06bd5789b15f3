package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import io.pagewire.transport.tcp.net.NativeSocket;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * Blocking reads and writes of the handshake: preamble plus one frame. Used on a socket before
 * its connection's threads start; each call allocates its own small buffers (handshakes are rare).
 *
 * <pre>
 * source                                   destination
 *   urgent:  PREAMBLE, HELLO  ---------->
 *   bg 0..n: PREAMBLE, JOIN   ---------->    (checks version, layout, limits; waits for all JOINs)
 *            <----------  PREAMBLE, HELLO_ACK   or   PREAMBLE, ERROR (then close)
 * </pre>
 */
final class Handshake {
    private Handshake() {
    }

    /** A received handshake frame: the header and its payload. */
    record Frame(int type, int region, long first, long count, byte[] payload) {
        String text() {
            return new String(payload, StandardCharsets.UTF_8);
        }
    }

    /** Writes the preamble and a frame with an optional payload in one call. */
    static void write(NativeSocket s, int type, int region, long first, long count, byte[] payload) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            int len = payload == null ? 0 : payload.length;
            MemorySegment buf = arena.allocate(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + len, 8);
            Wire.writePreamble(buf, Wire.VERSION);
            new FrameHeader(buf.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(type, 0, region, first, count, len);
            if (len > 0) {
                MemorySegment.copy(payload, 0, buf, ValueLayout.JAVA_BYTE, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, len);
            }
            s.sendFully(buf, 0, buf.byteSize());
        }
    }

    /** Writes the preamble and an ERROR frame; the caller closes the socket after. */
    static void writeError(NativeSocket s, String text) throws IOException {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        if (b.length > Wire.MAX_ERROR_BYTES) {
            b = java.util.Arrays.copyOf(b, Wire.MAX_ERROR_BYTES);
        }
        write(s, FrameType.ERROR, 0, 0, 0, b);
    }

    /**
     * Reads and checks the preamble.
     *
     * @return the peer's wire version, or -1 when it closed without sending anything
     * @throws WireException when it is not a pagewire peer
     */
    static int readPreamble(NativeSocket s) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Wire.PREAMBLE_LENGTH, 8);
            if (s.recvFully(buf, 0, Wire.PREAMBLE_LENGTH) < 0) {
                return -1;
            }
            return Wire.checkPreamble(buf);
        }
    }

    /**
     * Reads one frame of at most {@code maxPayload} payload bytes.
     *
     * @throws WireException on a bad CRC or an oversized payload
     * @throws EOFException when the peer closed
     */
    static Frame readFrame(NativeSocket s, int maxPayload) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            FrameHeader h = new FrameHeader(arena);
            if (s.recvFully(h.segment(), 0, FrameHeader.LENGTH) < 0) {
                throw new EOFException("the peer closed the connection during the handshake");
            }
            h.decode();
            if (h.flags() != 0) {
                throw new WireException("handshake frame " + FrameType.name(h.type()) + " with flags 0x" + Integer.toHexString(h.flags()));
            }
            long len = Integer.toUnsignedLong(h.payloadLength());
            int limit = h.type() == FrameType.ERROR ? Wire.MAX_ERROR_BYTES : maxPayload;
            if (len > limit) {
                throw new WireException("handshake frame " + FrameType.name(h.type()) + " payload of " + len + " bytes exceeds " + limit);
            }
            byte[] payload = new byte[(int) len];
            if (len > 0) {
                MemorySegment p = arena.allocate(len);
                if (s.recvFully(p, 0, len) < 0) {
                    throw new EOFException("the peer closed the connection in the middle of a " + FrameType.name(h.type()) + " frame");
                }
                MemorySegment.copy(p, ValueLayout.JAVA_BYTE, 0, payload, 0, (int) len);
            }
            return new Frame(h.type(), h.region(), h.first(), h.count(), payload);
        }
    }
}
