package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * What {@link AuthTck}'s replayed-handshake and JOIN-into-another-session rows need of a transport's
 * wire, written once per transport (a relay for byte streams, a spy subscription on Aeron, a tap on the
 * simulated RDMA fabric): record a real source's handshake as its bytes go, play them back as a new
 * source, and hold a session at the point where it waits for its background JOINs so a stranger's JOIN
 * can be presented first.
 */
public interface AuthWire {

    /**
     * What the destination sent a hostile peer before it closed or went quiet: the frame types in order
     * and the text of its first ERROR (null when none).
     */
    record Answer(List<Integer> frameTypes, String error) {
        /** @return whether the destination admitted the peer (it answered HELLO_ACK) */
        public boolean admitted() {
            return frameTypes.contains(FrameType.HELLO_ACK);
        }

        /**
         * Parses a destination's answer: frames, each after an optional preamble (byte streams send one
         * preamble; message transports one per message). A cut-off tail is ignored.
         */
        public static Answer parse(byte[] bytes) {
            List<Integer> types = new ArrayList<>();
            String error = null;
            int off = 0;
            while (true) {
                if (off + Wire.PREAMBLE_LENGTH <= bytes.length && MemorySegment.ofArray(bytes).get(Wire.U64, off) == Wire.MAGIC) {
                    off += Wire.PREAMBLE_LENGTH;
                }
                if (off + FrameHeader.LENGTH > bytes.length) {
                    return new Answer(List.copyOf(types), error);
                }
                FrameHeader h = new FrameHeader(MemorySegment.ofArray(Arrays.copyOfRange(bytes, off, off + FrameHeader.LENGTH))).decode();
                int len = Math.min(h.payloadLength(), bytes.length - off - FrameHeader.LENGTH);
                types.add(h.type());
                if (h.type() == FrameType.ERROR && error == null) {
                    error = new String(bytes, off + FrameHeader.LENGTH, len, StandardCharsets.UTF_8);
                }
                off += FrameHeader.LENGTH + len;
            }
        }

        @Override
        public String toString() {
            return types() + (error == null ? "" : " ERROR '" + error + "'");
        }

        private List<String> types() {
            return frameTypes.stream().map(FrameType::name).toList();
        }
    }

    /** Records the handshake of the sources that connect through {@link #uri()}. */
    interface Recorder extends AutoCloseable {
        /** @return the URI (without authentication options) a source connects to, to be recorded */
        String uri();

        /**
         * Plays back, as a new source, what the first recorded source sent on its handshake path (its
         * HELLO and AUTH messages as they went on the wire; the transport's own addressing, e.g. where
         * Aeron answers, is this peer's), and reads the destination's answer until it closes.
         */
        Answer replay(Duration timeout) throws Exception;
    }

    /** @return a recorder in front of {@code listener} */
    Recorder record(Listener listener) throws Exception;

    /** Plays a recording back: {@link Recorder#replay}. */
    @FunctionalInterface
    interface Replay {
        Answer replay(Duration timeout) throws Exception;
    }

    /** @return a recorder sources reach at {@code uri}, played back by {@code replay}, stopped by {@code stop} */
    static Recorder recorder(String uri, Replay replay, AutoCloseable stop) {
        return new Recorder() {
            @Override
            public String uri() {
                return uri;
            }

            @Override
            public Answer replay(Duration timeout) throws Exception {
                return replay.replay(timeout);
            }

            @Override
            public void close() throws Exception {
                stop.close();
            }
        };
    }

    /** Makes the MAC a JOIN carries: a kit {@code AuthExchange.Result::joinMac} of some session. */
    @FunctionalInterface
    interface JoinProof {
        byte[] mac(long sessionId, long stream, long streams);
    }

    /** An authenticated source whose background JOINs are held back: its session waits for them at the destination. */
    interface Held extends AutoCloseable {
        /** @return the session id its HELLO opened, as read off the wire */
        long sessionId();

        /**
         * Presents, on a new background channel of this transport, a JOIN of the held session's first
         * background channel carrying {@code proof}'s MAC (null: no MAC), and reads the answer until the
         * destination closes it or turns it away.
         */
        Answer forgeJoin(JoinProof proof, Duration timeout) throws Exception;

        /**
         * Lets the held JOINs go: the source finishes its handshake (the test accepts it).
         *
         * @return the source's connection, or null when the source is this transport's raw one (then the
         *         adapter checked its HELLO_ACK itself)
         */
        Connection release(Duration timeout) throws Exception;
    }

    /**
     * Starts an authenticated source for {@code listener} (authentication options {@code authOptions},
     * RAM layout of {@code context}) and returns once its session waits for its background JOINs.
     */
    Held hold(Listener listener, String authOptions, TransportContext context) throws Exception;
}
