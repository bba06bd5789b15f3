package io.pagewire.transport.spi.kit.stream;

import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.kit.HandshakeBudget;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

/**
 * The handshake of stream transports: blocking reads and writes of a preamble plus one frame, on
 * a socket before its connection's threads start, and the source's side of it ({@link #connect}).
 * Each call allocates its own small buffers (handshakes are rare).
 *
 * <pre>
 * source                                   destination
 *   urgent:  PREAMBLE, HELLO  ---------->
 *   (authenticated: AUTH 1 ---->, <---- PREAMBLE, AUTH 2, AUTH 3 ---->: {@link AuthExchange})
 *   bg 0..n: PREAMBLE, JOIN   ---------->    (checks version, layout, limits; waits for all JOINs)
 *            <----------  PREAMBLE, HELLO_ACK   or   PREAMBLE, ERROR (then close)
 * </pre>
 * The destination writes its preamble once, before the first frame it sends on a socket (AUTH 2
 * when the source authenticates).
 */
public final class StreamHandshake {
    private StreamHandshake() {
    }

    /** A received handshake frame: the header and its payload. */
    public record Frame(int type, int region, long first, long count, byte[] payload) {
        /** @return the payload as text from the peer, escaped */
        public String text() {
            return PeerText.escape(MemorySegment.ofArray(payload));
        }
    }

    /** How a stream transport makes and tunes the source's sockets. */
    public interface Dialer {
        /** @return a new connection to the destination, connected within {@code timeoutMs} */
        NativeSocket dial(long timeoutMs) throws IOException;

        /** Tunes the urgent socket. */
        void urgent(NativeSocket s) throws IOException;

        /** Tunes a background socket. */
        void background(NativeSocket s) throws IOException;

        /** Tunes background channel 0 when it carries the urgent lane too. */
        default void shared(NativeSocket s) throws IOException {
            background(s);
        }

        /** After the HELLO, on the urgent socket, before any JOIN (e.g. hand over memory). */
        default void afterHello(NativeSocket urgent, Hello hello) throws IOException {
        }

        /** Every background socket has joined. */
        default void joined(NativeSocket[] background) throws IOException {
        }
    }

    /** Makes the connection once the destination accepted. */
    @FunctionalInterface
    public interface Maker {
        StreamConnection make(NativeSocket urgent, NativeSocket[] background);
    }

    /**
     * The source's handshake: connects the urgent socket (or, with a shared channel, channel 0),
     * sends HELLO, connects and JOINs each background channel, reads the destination's answer and checks it.
     *
     * @return the connection, started
     * @throws TransportException {@code CONNECT_FAILED} naming the step that failed, {@code HANDSHAKE} when refused
     */
    public static StreamConnection connect(String scheme, String uri, TransportContext context, Hello hello, Dialer dialer, Maker maker) {
        long timeoutMs = TimeUnit.NANOSECONDS.toMillis(context.connectTimeoutNs());
        int channels = hello.channels();
        boolean shared = hello.sharedChannel();
        NativeSocket urgent = null;
        NativeSocket[] background = new NativeSocket[channels];
        String step = shared ? "connect the shared channel 0" : "connect the urgent connection";
        boolean preambleRead = false;
        try {
            urgent = dialer.dial(timeoutMs);
            if (shared) {
                dialer.shared(urgent);
                background[0] = urgent; // the HELLO's connection is background channel 0 and carries the urgent lane too
            } else {
                dialer.urgent(urgent);
            }
            byte[] payload = new byte[hello.encodedLength()];
            hello.encode(MemorySegment.ofArray(payload));
            step = "send HELLO";
            write(urgent, FrameType.HELLO, 0, 0, 0, payload);
            AuthExchange.Result auth = null;
            if (context.authentication() != null) {
                step = "authenticate";
                urgent.receiveTimeoutMs(timeoutMs);
                auth = AuthExchange.source(context.authentication(), hello, new AuthChannel(urgent, true), uri);
                preambleRead = true;
            }
            dialer.afterHello(urgent, hello);
            for (int c = shared ? 1 : 0; c < channels; c++) {
                step = "connect background channel " + c;
                background[c] = dialer.dial(timeoutMs);
                dialer.background(background[c]);
                write(background[c], FrameType.JOIN, channels, hello.sessionId(), c, auth == null ? null : auth.joinMac(hello.sessionId(), c, channels));
            }
            dialer.joined(background);
            step = "wait for the destination's answer";
            urgent.receiveTimeoutMs(timeoutMs);
            long version = preambleRead ? Wire.VERSION : readPreamble(urgent);
            if (version < 0) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri + " closed the connection without answering");
            }
            Frame answer = readFrame(urgent, 0);
            if (answer.type() == FrameType.ERROR) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri + " refused the migration: " + answer.text());
            }
            if (version != Wire.VERSION) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri + " speaks wire version " + version
                        + "; this source speaks version " + Wire.VERSION);
            }
            if (answer.type() != FrameType.HELLO_ACK || answer.first() != hello.sessionId()) {
                throw new WireException("expected HELLO_ACK for session " + Long.toHexString(hello.sessionId()) + ", got "
                        + FrameType.name(answer.type()) + " for " + Long.toHexString(answer.first()));
            }
            Handshakes.checkAck(context, answer.count());
            StreamConnection c = maker.make(urgent, background);
            c.start();
            return c;
        } catch (IOException e) {
            // A destination that refuses at once closes while this side still sends: its reason may be waiting.
            String refusal = urgent == null ? null : refusal(urgent, preambleRead, e);
            closeAll(urgent, background);
            if (refusal != null) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri + " refused the migration: " + refusal, e);
            }
            throw new TransportException(Kind.CONNECT_FAILED, scheme + ": could not " + step + " to " + uri + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            closeAll(urgent, background);
            throw e;
        }
    }

    /** @return the text of an ERROR the destination sent before closing, or null (what went wrong reading is kept with {@code cause}) */
    private static String refusal(NativeSocket urgent, boolean preambleRead, IOException cause) {
        try {
            urgent.receiveTimeoutMs(1000);
            if (!preambleRead && readPreamble(urgent) < 0) {
                return null;
            }
            Frame f = readFrame(urgent, 0);
            return f.type() == FrameType.ERROR ? f.text() : null;
        } catch (IOException | RuntimeException e) {
            cause.addSuppressed(e);
            return null;
        }
    }

    static void closeAll(NativeSocket urgent, NativeSocket[] background) {
        if (urgent != null) {
            urgent.close();
        }
        for (NativeSocket s : background) {
            if (s != null) {
                s.close();
            }
        }
    }

    /** Writes the preamble and a frame with an optional payload in one call. */
    public static void write(NativeSocket s, int type, int region, long first, long count, byte[] payload) throws IOException {
        write(s, true, type, region, first, count, payload);
    }

    /** Writes a frame with an optional payload, after the preamble when {@code preamble}, in one call. */
    public static void write(NativeSocket s, boolean preamble, int type, int region, long first, long count, byte[] payload) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            int len = payload == null ? 0 : payload.length;
            int at = preamble ? Wire.PREAMBLE_LENGTH : 0;
            MemorySegment buf = arena.allocate(at + FrameHeader.LENGTH + len, 8);
            if (preamble) {
                Wire.writePreamble(buf, Wire.VERSION);
            }
            new FrameHeader(buf.asSlice(at, FrameHeader.LENGTH)).encode(type, 0, region, first, count, len);
            if (len > 0) {
                MemorySegment.copy(payload, 0, buf, ValueLayout.JAVA_BYTE, at + FrameHeader.LENGTH, len);
            }
            s.sendFully(buf, 0, buf.byteSize());
        }
    }

    /** Writes the preamble and an ERROR frame; the caller closes the socket after. */
    public static void writeError(NativeSocket s, String text) throws IOException {
        writeError(s, true, text);
    }

    /** Writes an ERROR frame, after the preamble when {@code preamble}; the caller closes the socket after. */
    public static void writeError(NativeSocket s, boolean preamble, String text) throws IOException {
        write(s, preamble, FrameType.ERROR, 0, 0, 0, KitConnection.errorText(text));
    }

    /**
     * AUTH messages on a socket during the handshake. The source's preamble went out with its HELLO;
     * the destination's goes out with its first AUTH message, and the source reads it before the first
     * one it receives.
     */
    static final class AuthChannel implements AuthExchange.Channel {
        private final NativeSocket s;
        private final boolean source;
        private boolean preambleDone;

        /** @param source whether this is the source's end */
        AuthChannel(NativeSocket s, boolean source) {
            this.s = s;
            this.source = source;
        }

        /** @return whether this side's preamble (destination) went out, or the peer's (source) was read */
        boolean preambleDone() {
            return preambleDone;
        }

        @Override
        public void send(byte[] message) throws IOException {
            boolean preamble = !source && !preambleDone;
            write(s, preamble, FrameType.AUTH, 0, 0, 0, message);
            if (preamble) {
                preambleDone = true;
            }
        }

        @Override
        public void refuse(String why) throws IOException {
            write(s, false, FrameType.ERROR, 0, 0, 0, KitConnection.errorText(why));
        }

        @Override
        public byte[] receive(int maxBytes) throws IOException {
            if (source && !preambleDone) {
                long version = readPreamble(s);
                if (version < 0) {
                    throw new TransportException(Kind.HANDSHAKE, "the destination closed the connection without answering the authentication");
                }
                preambleDone = true;
            }
            Frame f;
            try {
                f = readFrame(s, maxBytes);
            } catch (io.pagewire.linux.ErrnoException e) {
                if (source || !e.isTimeout()) {
                    throw e;
                }
                // The destination reads with the handshake deadline as its receive timeout: a source that sent its HELLO
                // and then nothing is refused in words, as every handshake that misses its deadline is (found by the
                // hostile source, conformance/hostile_source.py: the connection used to be closed without a word).
                throw new TransportException(Kind.HANDSHAKE, "the handshake did not complete in time: the source's AUTH message"
                        + " had not arrived at the handshake deadline");
            }
            if (f.type() == FrameType.ERROR) {
                throw new TransportException(Kind.HANDSHAKE, (source ? "the destination" : "the source") + " refused: " + f.text());
            }
            if (f.type() != FrameType.AUTH) {
                throw new WireException("expected AUTH during the authentication, got " + FrameType.name(f.type()));
            }
            return f.payload();
        }
    }

    /**
     * Reads and checks the preamble.
     *
     * @return the peer's wire version (u32), or -1 when it closed without sending anything
     * @throws WireException when it is not a pagewire peer
     */
    public static long readPreamble(NativeSocket s) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Wire.PREAMBLE_LENGTH, 8);
            if (s.recvFully(buf, 0, Wire.PREAMBLE_LENGTH) < 0) {
                return -1;
            }
            return Integer.toUnsignedLong(Wire.checkPreamble(buf));
        }
    }

    /**
     * The destination's read of a first message: the preamble, by {@code deadlineNs}.
     *
     * @return the peer's wire version (u32), or -1 when it closed without sending anything
     * @throws WireException when it is not a pagewire peer
     * @throws TransportException {@code HANDSHAKE} when the deadline passed first
     */
    public static long readPreamble(NativeSocket s, long deadlineNs) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Wire.PREAMBLE_LENGTH, 8);
            if (!readBefore(s, buf, Wire.PREAMBLE_LENGTH, deadlineNs, "the preamble", true, 0, Wire.PREAMBLE_LENGTH)) {
                return -1;
            }
            return Integer.toUnsignedLong(Wire.checkPreamble(buf));
        }
    }

    /** Decodes and checks a handshake frame's header. @return its payload length, within the bound */
    private static long checkHeader(FrameHeader h, int maxPayload) {
        h.decode();
        if (h.flags() != 0) {
            throw new WireException("handshake frame " + FrameType.name(h.type()) + " with flags 0x" + Integer.toHexString(h.flags()));
        }
        long len = Integer.toUnsignedLong(h.payloadLength());
        int limit = h.type() == FrameType.ERROR ? Wire.MAX_ERROR_BYTES : maxPayload;
        if (len > limit) {
            throw new WireException("handshake frame " + FrameType.name(h.type()) + " payload of " + len + " bytes exceeds " + limit);
        }
        return len;
    }

    /** Payload bytes read at a time in a first message: its buffer grows only as bytes arrive. */
    private static final int CHUNK_BYTES = 16 * 1024;
    /** Payload bytes of a first message not charged to the budget (a real HELLO is a few hundred bytes). */
    private static final int FREE_BYTES = 4096;

    /**
     * The destination's read of a first message: one frame of at most {@code maxPayload} payload bytes,
     * by {@code deadlineNs} however slowly it arrives. The payload buffer grows only as bytes arrive,
     * each growth reserved from {@code budget} and returned before this returns.
     *
     * @throws WireException on flags or an oversized payload
     * @throws TransportException {@code HANDSHAKE} when the deadline passed first, or the budget is spent
     * @throws EOFException when the peer closed
     */
    public static Frame readFrame(NativeSocket s, int maxPayload, long deadlineNs, HandshakeBudget budget) throws IOException {
        long reserved = 0;
        try (Arena arena = Arena.ofConfined()) {
            FrameHeader h = new FrameHeader(arena);
            if (!readBefore(s, h.segment(), FrameHeader.LENGTH, deadlineNs, "the first frame's header", true, 0, FrameHeader.LENGTH)) {
                throw new EOFException("the peer closed the connection during the handshake");
            }
            long len = checkHeader(h, maxPayload);
            byte[] payload = new byte[0];
            if (len > 0) {
                MemorySegment chunk = arena.allocate(Math.min(len, CHUNK_BYTES));
                int got = 0;
                while (got < len) {
                    int n = (int) Math.min(chunk.byteSize(), len - got);
                    readBefore(s, chunk, n, deadlineNs, FrameType.name(h.type()) + " payload", false, got, len);
                    if (got + n > payload.length) {
                        int grown = (int) Math.min(len, Math.max(Math.max(FREE_BYTES, 2L * payload.length), got + n));
                        // The first FREE_BYTES of each handshake are its own (bounded by the handshake slots): peers
                        // holding large HELLOs cannot spend the budget a real source's small HELLO needs.
                        long charged = Math.max(0, grown - Math.max(FREE_BYTES, payload.length));
                        budget.reserve(charged);
                        reserved += charged;
                        payload = Arrays.copyOf(payload, grown);
                    }
                    MemorySegment.copy(chunk, ValueLayout.JAVA_BYTE, 0, payload, got, n);
                    got += n;
                }
            }
            return new Frame(h.type(), h.region(), h.first(), h.count(), payload);
        } finally {
            budget.release(reserved);
        }
    }

    /**
     * Reads exactly {@code len} bytes into {@code dst} by {@code deadlineNs}: bytes {@code [before, before + len)} of
     * {@code what}, which has {@code total} bytes (messages count in those: "1200 of 65537 bytes").
     *
     * @param first whether a close before the first byte is a clean end (return false) rather than a truncation
     * @return false when the peer closed before the first byte and {@code first}
     */
    private static boolean readBefore(NativeSocket s, MemorySegment dst, long len, long deadlineNs, String what, boolean first,
                                      long before, long total) throws IOException {
        long done = 0;
        while (done < len) {
            long left = deadlineNs - System.nanoTime();
            if (left <= 0) {
                throw new TransportException(Kind.HANDSHAKE, "the handshake did not complete in time: " + what + " was still arriving"
                        + " at the handshake deadline (" + (before + done) + " of " + total + " bytes)");
            }
            if (!s.pollReadable(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)))) {
                continue;
            }
            long n = s.recvSome(dst, done, len - done);
            if (n == 0) {
                if (done == 0 && first) {
                    return false;
                }
                throw new EOFException("the peer closed the connection in the middle of " + what + " (" + (before + done) + " of " + total + " bytes)");
            }
            done += n;
        }
        return true;
    }

    /**
     * Reads one frame of at most {@code maxPayload} payload bytes (an ERROR's up to its own limit).
     *
     * @throws WireException on a bad CRC, flags or an oversized payload
     * @throws EOFException when the peer closed
     */
    public static Frame readFrame(NativeSocket s, int maxPayload) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            FrameHeader h = new FrameHeader(arena);
            if (s.recvFully(h.segment(), 0, FrameHeader.LENGTH) < 0) {
                throw new EOFException("the peer closed the connection during the handshake");
            }
            long len = checkHeader(h, maxPayload);
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
