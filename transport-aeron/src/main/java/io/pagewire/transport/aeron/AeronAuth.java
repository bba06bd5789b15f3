package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import org.agrona.concurrent.IdleStrategy;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The kit's authentication exchange over Aeron, between the CONNECT and the ANSWER: AUTH 1 and 3
 * follow the CONNECT on the source's rendezvous publication, AUTH 2 is the first message of the
 * destination's reply stream. Only a source that proved itself is told where the connection's
 * streams are (the ANSWER), and its JOINs on them carry the session's MAC ({@link Handshake#join}).
 *
 * <pre>
 * every message: | PREAMBLE | frame header | payload |      AUTH (type 15): payload = one AuthExchange message
 * </pre>
 */
final class AeronAuth {
    private AeronAuth() {
    }

    /** Longest authentication-phase message. */
    static final int MAX_MESSAGE = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + AuthExchange.MAX_MESSAGE_BYTES;

    /** @return preamble and one frame */
    static byte[] frame(int type, int region, long first, long count, byte[] payload) {
        byte[] b = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + payload.length];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, Wire.VERSION);
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(type, 0, region, first, count, payload.length);
        System.arraycopy(payload, 0, b, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, payload.length);
        return b;
    }

    /** A parsed authentication-phase message. */
    record Frame(FrameHeader header, byte[] payload) {
    }

    /**
     * Parses an untrusted message: preamble and one frame whose payload fills the rest.
     *
     * @throws TransportException {@code HANDSHAKE} when it is an ERROR (its text, escaped)
     */
    static Frame parse(MemorySegment m, String peer) {
        long length = m.byteSize();
        if (length < Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH) {
            throw new WireException("a handshake message of " + length + " bytes is too short");
        }
        Wire.checkPreamble(m);
        FrameHeader h = new FrameHeader(MemorySegment.ofArray(m.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)
                .toArray(ValueLayout.JAVA_BYTE))).decode();
        long payload = Integer.toUnsignedLong(h.payloadLength());
        if (payload != length - Wire.PREAMBLE_LENGTH - FrameHeader.LENGTH) {
            throw new WireException("a handshake message announces " + payload + " bytes of payload and holds "
                    + (length - Wire.PREAMBLE_LENGTH - FrameHeader.LENGTH));
        }
        MemorySegment p = m.asSlice(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH);
        if (h.type() == FrameType.ERROR) {
            throw new TransportException(Kind.HANDSHAKE, peer + " refused: " + io.pagewire.transport.spi.PeerText.escape(p));
        }
        return new Frame(h, p.toArray(ValueLayout.JAVA_BYTE));
    }

    /** @return one whole message from {@code image} within the deadline */
    static MemorySegment receive(Image image, int max, long deadlineNs, String what) {
        MessageCollector c = new MessageCollector(max);
        IdleStrategy idle = Await.idle();
        while (!c.poll(image)) {
            if (image.isClosed() || image.isEndOfStream()) {
                throw new TransportException(Kind.CONNECT_FAILED, "the peer left during " + what);
            }
            if (System.nanoTime() - deadlineNs > 0) {
                throw new TransportException(Kind.CONNECT_FAILED, "no " + what + " within the connect timeout");
            }
            if (Thread.currentThread().isInterrupted()) {
                throw new TransportException(Kind.CLOSED, "interrupted while waiting for " + what);
            }
            idle.idle();
        }
        if (c.overflowBytes() > 0) {
            throw new WireException(what + " of " + c.overflowBytes() + " bytes exceeds " + max);
        }
        return c.message();
    }

    /** The exchange's channel: sends on {@code out}, receives from {@code in}. */
    static AuthExchange.Channel channel(ExclusivePublication out, Image in, long deadlineNs, String peer) {
        return new AuthExchange.Channel() {
            @Override
            public void send(byte[] message) {
                long r = Await.offer(out, frame(FrameType.AUTH, 0, 0, 0, message), deadlineNs);
                if (r < 0) {
                    throw new TransportException(Kind.CONNECT_FAILED, "could not send an AUTH message to " + peer + ": " + AeronConnection.code(r));
                }
            }

            @Override
            public void refuse(String why) {
                long r = Await.offer(out, Handshake.error(why), deadlineNs);
                if (r < 0) {
                    throw new TransportException(Kind.CONNECT_FAILED, "could not tell " + peer + " why: " + AeronConnection.code(r));
                }
            }

            @Override
            public byte[] receive(int maxBytes) {
                Frame f = parse(AeronAuth.receive(in, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + maxBytes, deadlineNs, "an AUTH message"), peer);
                if (f.header().type() != FrameType.AUTH) {
                    throw new WireException("expected AUTH, got " + FrameType.name(f.header().type()));
                }
                return f.payload();
            }
        };
    }
}
