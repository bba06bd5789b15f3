package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

/**
 * The first message on each queue pair, both ways: encoding and the checks of untrusted ones.
 * Handshakes are rare; these methods allocate freely.
 *
 * <pre>
 * source                                                destination
 *   urgent: envelope, PREAMBLE, HELLO, RDMA_SETUP  ------->
 *   background: envelope, PREAMBLE, JOIN(session)  ------->   checks version, HELLO, layout, limits
 *           <------ envelope, PREAMBLE, HELLO_ACK, RDMA_REGIONS   (registers RAM for pin-all first)
 *           <------ or envelope, PREAMBLE, ERROR(reason), then disconnect
 * </pre>
 */
final class Handshake {
    private Handshake() {
    }

    /** A parsed first message. */
    record First(int type, FrameHeader header, MemorySegment payload, MemorySegment after) {
    }

    static void preamble(Message m) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(Wire.PREAMBLE_LENGTH);
            Wire.writePreamble(p, Wire.VERSION);
            m.bytes(p, 0, Wire.PREAMBLE_LENGTH);
        }
    }

    /** Source, urgent: preamble, HELLO, RDMA_SETUP. */
    static void hello(Message m, Hello hello, int rxDepth) {
        preamble(m);
        int len = hello.encodedLength();
        m.frame(FrameType.HELLO, 0, 0, 0, 0, len);
        hello.encode(m.buf.asSlice(m.reserve(len), len));
        m.frame(Protocol.RDMA_SETUP, 0, 0, 0, 0, Protocol.Setup.LENGTH);
        new Protocol.Setup(rxDepth).encode(m.buf, m.reserve(Protocol.Setup.LENGTH));
    }

    /** Source, urgent, authenticating: preamble, HELLO, RDMA_SETUP, AUTH (the exchange's first message). */
    static void hello(Message m, Hello hello, int rxDepth, byte[] auth) {
        int need = Protocol.ENVELOPE + Wire.PREAMBLE_LENGTH + 3 * FrameHeader.LENGTH + hello.encodedLength() + Protocol.Setup.LENGTH + auth.length;
        if (need > Protocol.RX_BYTES) {
            throw new TransportException(TransportException.Kind.INVALID_CONFIG, "the HELLO and the first AUTH message need " + need
                    + " bytes, over rdma://'s " + Protocol.RX_BYTES + "-byte first message; use fewer regions or a shorter certificate chain");
        }
        hello(m, hello, rxDepth);
        m.frame(FrameType.AUTH, 0, 0, 0, 0, auth.length);
        m.bytes(auth);
    }

    /** Either side, authenticating: preamble, AUTH. */
    static void auth(Message m, byte[] auth) {
        preamble(m);
        m.frame(FrameType.AUTH, 0, 0, 0, 0, auth.length);
        m.bytes(auth);
    }

    /** Source, background: preamble, JOIN (with the session's MAC when authenticated, else none). */
    static void join(Message m, long sessionId, byte[] mac) {
        preamble(m);
        m.frame(FrameType.JOIN, 0, 1, sessionId, 0, mac == null ? 0 : mac.length);
        if (mac != null) {
            m.bytes(mac);
        }
    }

    /**
     * Reads an AUTH message of the exchange (envelope, preamble, AUTH frame) and copies its payload out.
     *
     * @throws TransportException {@code HANDSHAKE} when the peer answered ERROR (its text, escaped)
     */
    static byte[] authPayload(MemorySegment msg, String peer) {
        First f = read(msg, io.pagewire.transport.spi.kit.AuthExchange.MAX_MESSAGE_BYTES);
        if (f.type() == FrameType.ERROR) {
            throw new TransportException(TransportException.Kind.HANDSHAKE, peer + " refused: "
                    + io.pagewire.transport.spi.PeerText.escape(f.payload()));
        }
        if (f.type() != FrameType.AUTH || f.after().byteSize() != 0) {
            throw new WireException("expected one AUTH frame, got " + Protocol.name(f.type()) + " and " + f.after().byteSize() + " bytes more");
        }
        return f.payload().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    /**
     * Reads the RDMA frame that follows the HELLO and what comes after it: nothing, or (authenticating)
     * one AUTH frame.
     *
     * @return {setup payload, AUTH payload or null}
     */
    static MemorySegment[] setupAndAuth(MemorySegment after) {
        if (after.byteSize() < FrameHeader.LENGTH) {
            return new MemorySegment[]{follow(after, Protocol.RDMA_SETUP, Protocol.Setup.LENGTH), null};
        }
        long setupEnd = FrameHeader.LENGTH + Protocol.Setup.LENGTH;
        if (after.byteSize() <= setupEnd) {
            return new MemorySegment[]{follow(after, Protocol.RDMA_SETUP, Protocol.Setup.LENGTH), null};
        }
        MemorySegment setup = follow(after.asSlice(0, setupEnd), Protocol.RDMA_SETUP, Protocol.Setup.LENGTH);
        MemorySegment rest = after.asSlice(setupEnd);
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        if (rest.byteSize() < FrameHeader.LENGTH) {
            throw new WireException("the first message ends inside the frame after RDMA_SETUP");
        }
        MemorySegment.copy(rest, 0, h.segment(), 0, FrameHeader.LENGTH);
        h.decode();
        long payload = Integer.toUnsignedLong(h.payloadLength());
        if (h.type() != FrameType.AUTH || h.flags() != 0 || payload > io.pagewire.transport.spi.kit.AuthExchange.MAX_MESSAGE_BYTES
                || payload != rest.byteSize() - FrameHeader.LENGTH) {
            throw new WireException("expected one AUTH frame after RDMA_SETUP, got " + Protocol.name(h.type()) + " with " + payload
                    + " payload bytes in " + (rest.byteSize() - FrameHeader.LENGTH));
        }
        return new MemorySegment[]{setup, rest.asSlice(FrameHeader.LENGTH, payload)};
    }

    /** Destination: preamble, HELLO_ACK, RDMA_REGIONS. */
    static void accept(Message m, long sessionId, long heartbeatMs, Protocol.Regions regions) {
        preamble(m);
        m.frame(FrameType.HELLO_ACK, 0, 0, sessionId, heartbeatMs, 0);
        int len = regions.encodedLength();
        m.frame(Protocol.RDMA_REGIONS, 0, 0, 0, 0, len);
        regions.encode(m.buf, m.reserve(len));
    }

    /** Destination: preamble, ERROR. */
    static void refuse(Message m, String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        if (b.length > Wire.MAX_ERROR_BYTES) {
            b = java.util.Arrays.copyOf(b, Wire.MAX_ERROR_BYTES);
        }
        preamble(m);
        m.frame(FrameType.ERROR, 0, 0, 0, 0, b.length);
        m.bytes(b);
    }

    /**
     * Reads an untrusted first message: envelope, preamble, one frame and its payload.
     *
     * @param maxPayload largest payload accepted for this frame type (HELLO: {@link Wire#MAX_HELLO_BYTES})
     * @return the first frame; {@code after} holds the bytes behind its payload
     * @throws WireException naming what is wrong (not a pagewire peer, version, CRC, length)
     */
    static First read(MemorySegment msg, int maxPayload) {
        long len = msg.byteSize();
        if (len < Protocol.ENVELOPE + Wire.PREAMBLE_LENGTH) {
            throw new WireException("not a pagewire peer: the first message has only " + len + " bytes, starting "
                    + Wire.printable(msg.asSlice(Math.min(len, Protocol.ENVELOPE)), 16));
        }
        MemorySegment p = msg.asSlice(Protocol.ENVELOPE);
        int version = Wire.checkPreamble(p);
        if (version != Wire.VERSION) {
            throw new VersionMismatch(version);
        }
        long at = Protocol.ENVELOPE + Wire.PREAMBLE_LENGTH;
        if (len - at < FrameHeader.LENGTH) {
            throw new WireException("the first message ends inside its frame header (" + (len - at) + " of " + FrameHeader.LENGTH + " bytes)");
        }
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        MemorySegment.copy(msg, at, h.segment(), 0, FrameHeader.LENGTH);
        h.decode();
        if (h.flags() != 0) {
            throw new WireException("handshake frame " + FrameType.name(h.type()) + " with flags 0x" + Integer.toHexString(h.flags()));
        }
        at += FrameHeader.LENGTH;
        long payload = Integer.toUnsignedLong(h.payloadLength());
        long limit = h.type() == FrameType.ERROR ? Wire.MAX_ERROR_BYTES : maxPayload;
        if (payload > limit) {
            throw new WireException("handshake frame " + FrameType.name(h.type()) + " payload of " + payload + " bytes exceeds " + limit);
        }
        if (payload > len - at) {
            throw new WireException("handshake frame " + FrameType.name(h.type()) + " says " + payload + " payload bytes, the message holds "
                    + (len - at) + " (truncated, or larger than rdma://'s " + Protocol.RX_BYTES + "-byte first message)");
        }
        return new First(h.type(), h, msg.asSlice(at, payload), msg.asSlice(at + payload));
    }

    /** Reads the RDMA frame that must follow the first frame. */
    static MemorySegment follow(MemorySegment after, int type, int maxPayload) {
        if (after.byteSize() < FrameHeader.LENGTH) {
            throw new WireException("the first message lacks its " + Protocol.name(type) + " frame (an rdma:// peer sends it with "
                    + (type == Protocol.RDMA_SETUP ? "HELLO" : "HELLO_ACK") + ")");
        }
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        MemorySegment.copy(after, 0, h.segment(), 0, FrameHeader.LENGTH);
        h.decode();
        if (h.type() != type || h.flags() != 0) {
            throw new WireException("expected " + Protocol.name(type) + ", got " + Protocol.name(h.type()) + " with flags 0x" + Integer.toHexString(h.flags()));
        }
        long payload = Integer.toUnsignedLong(h.payloadLength());
        if (payload > maxPayload || payload != after.byteSize() - FrameHeader.LENGTH) {
            throw new WireException(Protocol.name(type) + " payload of " + payload + " bytes; the message has " + (after.byteSize() - FrameHeader.LENGTH)
                    + " bytes after its header (at most " + maxPayload + ")");
        }
        return after.asSlice(FrameHeader.LENGTH, payload);
    }

    /** The peer speaks another wire version. */
    static final class VersionMismatch extends TransportException {
        private static final long serialVersionUID = 1L;
        final int version;

        VersionMismatch(int version) {
            super(Kind.PROTOCOL, "this side speaks pagewire wire version " + Wire.VERSION + "; the peer speaks version " + version);
            this.version = version;
        }
    }
}
