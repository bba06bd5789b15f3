package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

import static io.pagewire.transport.spi.wire.Wire.U32;

/**
 * The Aeron handshake messages. Each is exactly one Aeron message; everything after the handshake is the
 * version-1 frame stream of {@code docs/wire-protocol.md}.
 *
 * <pre>
 * CONNECT (source -> listener, first message of the rendezvous stream):
 *  0               4               8               12              16
 *  +---------------+---------------+---------------+---------------+
 *  | "PWAE" (u32)  | version u32=1 | reply port    | reply stream  |   envelope: where to answer
 *  +---------------+---------------+---------------+---------------+
 *  | PREAMBLE (16: "PAGEWIRE", wire version, 0)                    |
 *  +---------------------------------------------------------------+
 *  | HELLO frame: header (32) + HELLO payload (channels = 1)       |
 *  +---------------------------------------------------------------+
 *  The answer goes to the source's IP address as the datagrams show it (never to an address the message names)
 *  at the reply port (0 for aeron:ipc), on the reply stream id.
 *
 * ANSWER (listener -> source, first message of the reply stream, which becomes the destination's urgent stream):
 *  | PREAMBLE | HELLO_ACK header: first = session id, count = heartbeat ms, payload length 16 |
 *  | urgent port (u32) | urgent stream (u32) | background port (u32) | background stream (u32) |
 *  or | PREAMBLE | ERROR frame (reason) |, after which the listener closes the reply stream.
 *
 * JOIN (source -> destination, first message of the per-connection urgent and background streams):
 *  | PREAMBLE | JOIN header: region = 1 (background streams), first = session id,
 *  |          count = 0 (background stream) or -1 (urgent stream)                  | MAC (32, authenticated only) |
 *
 * Authenticated (HELLO flag AUTHENTICATED): between CONNECT and ANSWER, AUTH 1 and AUTH 3 follow the CONNECT on the
 * rendezvous stream and AUTH 2 comes first on the reply stream ({@link AeronAuth}); the ANSWER, naming the
 * connection's streams, goes only to a source that proved itself.
 * </pre>
 * Ports are 0 over IPC; all integers are big-endian, as in the wire format.
 */
final class Handshake {
    private Handshake() {
    }

    /** "PWAE" as a big-endian u32. */
    static final int ENVELOPE_MAGIC = 0x50574145;
    static final int ENVELOPE_VERSION = 1;
    static final int ENVELOPE_LENGTH = 16;
    static final int ACK_PAYLOAD_LENGTH = 16;
    /** JOIN count of the urgent stream. */
    static final long URGENT_STREAM_INDEX = -1;
    /** Longest CONNECT message. */
    static final int MAX_CONNECT_LENGTH = ENVELOPE_LENGTH + Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + Wire.MAX_HELLO_BYTES;
    /** Longest answer. */
    static final int MAX_ANSWER_LENGTH = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + Wire.MAX_ERROR_BYTES;
    /** Length of a JOIN message. */
    static final int JOIN_LENGTH = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH;

    /** @return a CONNECT message */
    static byte[] connect(int replyPort, int replyStream, Hello hello) {
        int helloLength = hello.encodedLength();
        byte[] b = new byte[ENVELOPE_LENGTH + Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + helloLength];
        MemorySegment s = MemorySegment.ofArray(b);
        envelope(s, replyPort, replyStream);
        Wire.writePreamble(s.asSlice(ENVELOPE_LENGTH), Wire.VERSION);
        int headerAt = ENVELOPE_LENGTH + Wire.PREAMBLE_LENGTH;
        hello.encode(s.asSlice(headerAt + FrameHeader.LENGTH));
        new FrameHeader(s.asSlice(headerAt, FrameHeader.LENGTH)).encode(FrameType.HELLO, 0, 0, 0, 0, helloLength);
        return b;
    }

    /** Writes the 16-byte envelope at the start of {@code s}. */
    static void envelope(MemorySegment s, int replyPort, int replyStream) {
        s.set(U32, 0, ENVELOPE_MAGIC);
        s.set(U32, 4, ENVELOPE_VERSION);
        s.set(U32, 8, replyPort);
        s.set(U32, 12, replyStream);
    }

    /** The parsed envelope of a CONNECT. */
    record Envelope(int replyPort, int replyStream) {
    }

    /**
     * @return the envelope, or null when the message does not start with one (not a pagewire source: nowhere to
     *         answer)
     */
    static Envelope envelope(MemorySegment m, boolean ipc) {
        if (m.byteSize() < ENVELOPE_LENGTH || m.get(U32, 0) != ENVELOPE_MAGIC || m.get(U32, 4) != ENVELOPE_VERSION) {
            return null;
        }
        int port = m.get(U32, 8);
        int stream = m.get(U32, 12);
        if (ipc ? port != 0 : port < 1 || port > 65535) {
            return null;
        }
        return new Envelope(port, stream);
    }

    /**
     * Parses what follows the envelope of a CONNECT: preamble and HELLO frame, from an untrusted peer.
     *
     * @param m the message after the envelope
     * @return the HELLO
     * @throws WireException naming what is wrong (sent back to the source as ERROR)
     */
    static Hello hello(MemorySegment m) {
        long length = m.byteSize();
        if (length < Wire.PREAMBLE_LENGTH) {
            throw new WireException("not a pagewire peer: the handshake holds " + length + " bytes, "
                    + Wire.printable(m, (int) length) + ", fewer than the 16-byte preamble");
        }
        int version = Wire.checkPreamble(m);
        if (version != Wire.VERSION) {
            throw new WireException("this destination speaks pagewire wire version " + Wire.VERSION + "; the source speaks version "
                    + Integer.toUnsignedString(version));
        }
        if (length < Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH) {
            throw new WireException("the handshake ends after " + length + " bytes, inside the HELLO frame header");
        }
        byte[] headerBytes = m.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH).toArray(ValueLayout.JAVA_BYTE);
        FrameHeader h = new FrameHeader(MemorySegment.ofArray(headerBytes)).decode();
        if (h.type() != FrameType.HELLO) {
            throw new WireException("expected HELLO as the first frame, got " + FrameType.name(h.type()));
        }
        long payload = Integer.toUnsignedLong(h.payloadLength());
        if (payload > Wire.MAX_HELLO_BYTES) {
            throw new WireException("HELLO payload of " + payload + " bytes exceeds the " + Wire.MAX_HELLO_BYTES + "-byte limit");
        }
        long have = length - Wire.PREAMBLE_LENGTH - FrameHeader.LENGTH;
        if (have < payload) {
            throw new WireException("HELLO truncated: its header announces " + payload + " bytes of payload, the message holds " + have);
        }
        if (have > payload) {
            throw new WireException("HELLO followed by " + (have - payload) + " unexpected bytes in the handshake message");
        }
        return Hello.decode(m.asSlice(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, payload), (int) payload);
    }

    /** Ports and streams the destination opened for one connection. */
    record Ack(long sessionId, long heartbeatMs, int urgentPort, int urgentStream, int backgroundPort, int backgroundStream) {
    }

    /** @return a HELLO_ACK answer */
    static byte[] ack(Ack a) {
        byte[] b = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + ACK_PAYLOAD_LENGTH];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, Wire.VERSION);
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH))
                .encode(FrameType.HELLO_ACK, 0, 0, a.sessionId(), a.heartbeatMs(), ACK_PAYLOAD_LENGTH);
        int p = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH;
        s.set(U32, p, a.urgentPort());
        s.set(U32, p + 4, a.urgentStream());
        s.set(U32, p + 8, a.backgroundPort());
        s.set(U32, p + 12, a.backgroundStream());
        return b;
    }

    /** @return a refusal: preamble and ERROR frame (text cut to {@link Wire#MAX_ERROR_BYTES}) */
    static byte[] error(String reason) {
        byte[] text = errorText(reason);
        byte[] b = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + text.length];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, Wire.VERSION);
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.ERROR, 0, 0, 0, 0, text.length);
        System.arraycopy(text, 0, b, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, text.length);
        return b;
    }

    /** @return UTF-8 of {@code reason}, cut on a character boundary to at most {@link Wire#MAX_ERROR_BYTES} */
    static byte[] errorText(String reason) {
        byte[] text = reason.getBytes(StandardCharsets.UTF_8);
        if (text.length <= Wire.MAX_ERROR_BYTES) {
            return text;
        }
        int n = Wire.MAX_ERROR_BYTES;
        while (n > 0 && (text[n] & 0xC0) == 0x80) {
            n--; // do not cut a multi-byte character
        }
        return java.util.Arrays.copyOf(text, n);
    }

    /** What the source got back. */
    record Answer(Ack ack, String error) {
    }

    /**
     * Parses the destination's answer to a CONNECT.
     *
     * @throws WireException when it is neither a HELLO_ACK nor an ERROR
     */
    static Answer answer(MemorySegment m, boolean ipc) {
        long length = m.byteSize();
        if (length < Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH) {
            throw new WireException("the destination's answer of " + length + " bytes is too short");
        }
        int version = Wire.checkPreamble(m);
        FrameHeader h = new FrameHeader(MemorySegment.ofArray(m.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)
                .toArray(ValueLayout.JAVA_BYTE))).decode();
        long payload = Integer.toUnsignedLong(h.payloadLength());
        if (payload != length - Wire.PREAMBLE_LENGTH - FrameHeader.LENGTH) {
            throw new WireException("the destination's answer announces " + payload + " bytes of payload and holds "
                    + (length - Wire.PREAMBLE_LENGTH - FrameHeader.LENGTH));
        }
        int p = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH;
        if (h.type() == FrameType.ERROR) {
            if (payload > Wire.MAX_ERROR_BYTES) {
                throw new WireException("the destination's ERROR text of " + payload + " bytes exceeds " + Wire.MAX_ERROR_BYTES);
            }
            return new Answer(null, new String(m.asSlice(p, payload).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
        }
        if (version != Wire.VERSION) {
            throw new WireException("the destination speaks wire version " + Integer.toUnsignedString(version) + "; this source speaks version "
                    + Wire.VERSION);
        }
        if (h.type() != FrameType.HELLO_ACK || payload != ACK_PAYLOAD_LENGTH) {
            throw new WireException("expected HELLO_ACK or ERROR from the destination, got " + h);
        }
        int up = m.get(U32, p);
        int us = m.get(U32, p + 4);
        int bp = m.get(U32, p + 8);
        int bs = m.get(U32, p + 12);
        if (ipc ? up != 0 || bp != 0 : up < 1 || up > 65535 || bp < 1 || bp > 65535) {
            throw new WireException("HELLO_ACK names ports " + Integer.toUnsignedString(up) + " and " + Integer.toUnsignedString(bp)
                    + (ipc ? "; over IPC they must be 0" : "; expected 1..65535"));
        }
        return new Answer(new Ack(h.first(), h.count(), up, us, bp, bs), null);
    }

    /** @return a JOIN message for one stream; authenticated, its payload is the session's MAC over (session, stream index, 1) */
    static byte[] join(long sessionId, long streamIndex, AuthExchange.Result auth) {
        byte[] mac = auth == null ? new byte[0] : auth.joinMac(sessionId, streamIndex, 1);
        byte[] b = new byte[JOIN_LENGTH + mac.length];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, Wire.VERSION);
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, 1, sessionId, streamIndex, mac.length);
        System.arraycopy(mac, 0, b, JOIN_LENGTH, mac.length);
        return b;
    }

    /**
     * Checks a JOIN message.
     *
     * @return null when it joins {@code sessionId}'s stream {@code streamIndex}, else what is wrong
     */
    static String checkJoin(MemorySegment m, long sessionId, long streamIndex, AuthExchange.Result auth) {
        int macLength = auth == null ? 0 : AuthExchange.JOIN_MAC_BYTES;
        if (auth != null && m.byteSize() == JOIN_LENGTH) {
            return AuthExchange.REFUSED + ": a JOIN without a MAC into an authenticated session";
        }
        if (m.byteSize() != JOIN_LENGTH + macLength) {
            return "a first message of " + m.byteSize() + " bytes instead of a " + (JOIN_LENGTH + macLength) + "-byte JOIN";
        }
        try {
            int version = Wire.checkPreamble(m);
            if (version != Wire.VERSION) {
                return "JOIN with wire version " + Integer.toUnsignedString(version);
            }
            FrameHeader h = new FrameHeader(MemorySegment.ofArray(m.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)
                    .toArray(ValueLayout.JAVA_BYTE))).decode();
            if (h.type() != FrameType.JOIN || h.first() != sessionId || h.count() != streamIndex || h.region() != 1 || h.payloadLength() != macLength) {
                return "expected JOIN(session " + Long.toHexString(sessionId) + ", stream " + streamIndex + "), got " + h
                        + " for session " + Long.toHexString(h.first());
            }
            if (auth != null && !auth.checkJoin(sessionId, streamIndex, 1, m.asSlice(JOIN_LENGTH).toArray(ValueLayout.JAVA_BYTE))) {
                return AuthExchange.REFUSED + ": JOIN(session " + Long.toHexString(sessionId) + ", stream " + streamIndex + ") without this session's MAC";
            }
            return null;
        } catch (WireException e) {
            return e.getMessage();
        }
    }
}
