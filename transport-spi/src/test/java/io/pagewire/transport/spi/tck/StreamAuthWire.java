package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * {@link AuthWire} for byte-stream transports ({@code tcp://}, {@code unix://}): a relay between the
 * source and the listener records what the source sends on each connection (the first is the urgent
 * one, with HELLO and the AUTH messages; the others are background channels, each starting with its
 * JOIN) and can hold the background connections back, so the session waits for its JOINs at the
 * destination. Raw connections (plain JDK channels, none of our sending code) play recordings back
 * and present forged JOINs.
 */
public final class StreamAuthWire implements AuthWire {
    /** How this transport's addresses look. */
    public interface Addressing {
        /** @return the address the listener accepts on */
        SocketAddress target(Listener listener) throws IOException;

        /** @return a new listening channel for a relay */
        ServerSocketChannel bindRelay() throws IOException;

        /** @return the listener's URI with its address replaced by the relay's */
        String relayUri(Listener listener, SocketAddress relay) throws IOException;
    }

    private static final int RECORD_BYTES = 64 * 1024;
    private final Addressing addressing;

    public StreamAuthWire(Addressing addressing) {
        this.addressing = addressing;
    }

    /** A relay; each accepted connection is piped to the listener by two threads. */
    private final class Relay implements AutoCloseable {
        final ServerSocketChannel server;
        final SocketAddress target;
        final String uri;
        final CountDownLatch gate; // null: nothing held
        final List<ByteArrayOutputStream> sent = new ArrayList<>(); // guarded by itself
        final List<SocketChannel> open = new ArrayList<>(); // guarded by sent
        final CountDownLatch firstBackgroundHeld = new CountDownLatch(1);
        volatile boolean closed;

        Relay(Listener l, boolean hold) throws IOException {
            target = addressing.target(l);
            server = addressing.bindRelay();
            uri = addressing.relayUri(l, server.getLocalAddress());
            gate = hold ? new CountDownLatch(1) : null;
            Thread.ofPlatform().daemon().name("tck-relay-accept").start(this::acceptLoop);
        }

        private void acceptLoop() {
            try {
                while (!closed) {
                    SocketChannel in = server.accept();
                    ByteArrayOutputStream record = new ByteArrayOutputStream();
                    int index;
                    synchronized (sent) {
                        index = sent.size();
                        sent.add(record);
                        open.add(in);
                    }
                    Thread.ofPlatform().daemon().name("tck-relay-" + index).start(() -> relay(in, record, index));
                }
            } catch (IOException e) {
                if (!closed) {
                    throw new java.io.UncheckedIOException("relay stopped accepting", e);
                }
            }
        }

        private void relay(SocketChannel in, ByteArrayOutputStream record, int index) {
            try {
                if (index > 0 && gate != null) {
                    firstBackgroundHeld.countDown();
                    gate.await(); // a background connection: its JOIN stays unread until released
                }
                SocketChannel out = SocketChannel.open(target);
                synchronized (sent) {
                    open.add(out);
                }
                Thread.ofPlatform().daemon().name("tck-relay-back-" + index).start(() -> pump(out, in, null));
                pump(in, out, record);
            } catch (IOException e) {
                close(in); // the listener is gone: the relayed source sees its connection end
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                close(in);
            }
        }

        private void pump(SocketChannel from, SocketChannel to, ByteArrayOutputStream record) {
            ByteBuffer b = ByteBuffer.allocate(16 * 1024);
            try {
                while (from.read(b.clear()) >= 0) {
                    b.flip();
                    if (record != null) {
                        synchronized (record) {
                            int keep = Math.min(b.remaining(), RECORD_BYTES - record.size());
                            record.write(b.array(), 0, keep);
                        }
                    }
                    while (b.hasRemaining()) {
                        to.write(b);
                    }
                }
            } catch (IOException e) {
                // A reset or a read after the other direction closed both channels: the relayed connection has
                // ended, which is what the peers see below (a relay forwards an end, it has no error of its own).
            }
            close(from);
            close(to);
        }

        private static void close(SocketChannel c) {
            try {
                c.close();
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }

        /** @return what the source sent on connection {@code i} so far */
        byte[] sent(int i) {
            ByteArrayOutputStream r;
            synchronized (sent) {
                r = sent.get(i);
            }
            synchronized (r) {
                return r.toByteArray();
            }
        }

        int connections() {
            synchronized (sent) {
                return sent.size();
            }
        }

        @Override
        public void close() throws IOException {
            closed = true;
            if (gate != null) {
                gate.countDown();
            }
            server.close();
            synchronized (sent) {
                for (SocketChannel c : open) {
                    c.close();
                }
            }
        }
    }

    /**
     * @return the first {@code frames} frames of a recorded connection, after its preamble
     *         (handshake frames: no data digest)
     */
    private static byte[] frames(byte[] recorded, int frames) {
        int off = Wire.PREAMBLE_LENGTH;
        for (int i = 0; i < frames; i++) {
            if (off + FrameHeader.LENGTH > recorded.length) {
                throw new AssertionError("the recording ends inside frame " + i + " (" + recorded.length + " bytes)");
            }
            FrameHeader h = new FrameHeader(MemorySegment.ofArray(Arrays.copyOfRange(recorded, off, off + FrameHeader.LENGTH))).decode();
            off += FrameHeader.LENGTH + h.payloadLength();
        }
        return Arrays.copyOf(recorded, off);
    }

    /** @return the first frame's type (after the preamble) */
    private static int firstType(byte[] recorded) {
        return new FrameHeader(MemorySegment.ofArray(Arrays.copyOfRange(recorded, Wire.PREAMBLE_LENGTH, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH)))
                .decode().type();
    }

    /** Writes {@code bytes} on a new raw connection to the listener and reads its answer until it closes. */
    private Answer exchange(SocketAddress target, byte[] bytes, Duration timeout) throws IOException {
        try (SocketChannel c = SocketChannel.open(target)) {
            c.write(ByteBuffer.wrap(bytes));
            return Answer.parse(readUntilClosed(c, timeout));
        }
    }

    private static byte[] readUntilClosed(SocketChannel c, Duration timeout) throws IOException {
        ByteArrayOutputStream got = new ByteArrayOutputStream();
        CompletableFuture<Void> reading = CompletableFuture.runAsync(() -> {
            ByteBuffer b = ByteBuffer.allocate(8192);
            try {
                while (c.read(b.clear()) >= 0) {
                    synchronized (got) {
                        got.write(b.array(), 0, b.position());
                    }
                }
            } catch (IOException e) {
                // a reset after the ERROR counts as the close
            }
        }, AuthTck.THREADS);
        try {
            reading.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            c.close();
            synchronized (got) {
                throw new AssertionError("the destination did not close within " + timeout + " (answered " + Answer.parse(got.toByteArray()) + ")");
            }
        }
        synchronized (got) {
            return got.toByteArray();
        }
    }

    @Override
    public Recorder record(Listener listener) throws IOException {
        Relay relay = new Relay(listener, false);
        return AuthWire.recorder(relay.uri, timeout -> {
            // HELLO, AUTH 1, AUTH 3 of the urgent connection: the source's whole side of the authentication
            Answer urgent = exchange(relay.target, frames(relay.sent(0), 3), timeout);
            // then its JOINs, MAC and all, each on a new connection: none may be admitted
            for (int i = 1; i < relay.connections(); i++) {
                byte[] bg = relay.sent(i);
                Answer join = firstType(bg) == FrameType.JOIN ? exchange(relay.target, frames(bg, 1), timeout) : null;
                if (join != null && join.admitted()) {
                    return join;
                }
            }
            return urgent;
        }, relay);
    }

    @Override
    public Held hold(Listener listener, String authOptions, TransportContext context) throws Exception {
        Relay relay = new Relay(listener, true);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(
                () -> Transports.connect(AuthTck.with(AuthTck.withoutAuth(relay.uri), authOptions), context), AuthTck.THREADS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!relay.firstBackgroundHeld.await(10, TimeUnit.MILLISECONDS)) {
            if (source.isDone() || System.nanoTime() > deadline) {
                relay.close();
                Connection c = source.get(); // throws the source's failure
                c.close();
                throw new AssertionError("the source did not open a background connection within 30 s");
            }
        }
        byte[] hello = frames(relay.sent(0), 1);
        MemorySegment payload = MemorySegment.ofArray(hello).asSlice(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH);
        long session = payload.get(Wire.U64, 0);
        int channels = Short.toUnsignedInt(payload.get(Wire.U16, 12));
        return new Held() {
            @Override
            public long sessionId() {
                return session;
            }

            @Override
            public Answer forgeJoin(JoinProof proof, Duration timeout) throws IOException {
                byte[] mac = proof == null ? new byte[0] : proof.mac(session, 0, channels);
                byte[] join = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + mac.length];
                MemorySegment j = MemorySegment.ofArray(join);
                Wire.writePreamble(j, Wire.VERSION);
                new FrameHeader(j.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, channels, session, 0, mac.length);
                System.arraycopy(mac, 0, join, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, mac.length);
                return exchange(relay.target, join, timeout);
            }

            @Override
            public Connection release(Duration timeout) throws Exception {
                relay.gate.countDown();
                return source.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            }

            @Override
            public void close() throws IOException {
                relay.close();
                source.thenAccept(Connection::close);
            }
        };
    }
}
