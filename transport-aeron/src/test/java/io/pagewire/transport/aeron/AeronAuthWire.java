package io.pagewire.transport.aeron;

import io.aeron.Aeron;
import io.aeron.ExclusivePublication;
import io.aeron.FragmentAssembler;
import io.aeron.Image;
import io.aeron.Subscription;
import io.aeron.status.PublicationErrorFrame;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Authentication;
import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import org.agrona.concurrent.IdleStrategy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * {@link AuthWire} over {@code aeron:udp} and {@code aeron:ipc}. Recording: a spy subscription in this JVM's urgent
 * driver (where a source's rendezvous publication lives; over IPC one more subscriber of the stream) sees the
 * messages a real source publishes to the listener, as they go;
 * the replay sends them from {@link AeronRawPeer}'s own publication (its own reply stream in the envelope: the
 * addressing a TCP connection has for free). Holding: Aeron JOINs go to the connection's own streams, which only
 * the authenticated source learns (the ANSWER), so the held source is a raw one: it authenticates with the kit's
 * exchange, JOINs the urgent stream, and sends its background JOIN only when released; a forged JOIN on the
 * background stream before it is rejected by the listener ({@code Image.reject}), which a second Aeron client
 * sees as a publication error frame.
 */
final class AeronAuthWire implements AuthWire {
    private static final int MAX_RECORDED = 8;

    private static AeronOptions options(Listener l) {
        return AeronOptions.parse(TransportUri.parse(l.uri()), false);
    }

    @Override
    public Recorder record(Listener listener) {
        AeronOptions o = options(listener);
        Drivers.Lease lease = Drivers.embedded(Drivers.Role.URGENT);
        // UDP: a spy on the source's publication to the endpoint; IPC: one more subscriber of the stream (IPC fans out)
        Subscription spy = lease.aeron().addSubscription(o.ipc() ? "aeron:ipc"
                : "aeron-spy:aeron:udp?endpoint=" + AeronOptions.hostPort(o.host(), o.port()), o.streamId());
        List<byte[]> messages = new ArrayList<>();
        FragmentAssembler assembler = new FragmentAssembler((buffer, offset, length, header) -> {
            byte[] m = new byte[length];
            buffer.getBytes(offset, m);
            synchronized (messages) {
                if (messages.size() < MAX_RECORDED) {
                    messages.add(m);
                }
            }
        });
        Thread poller = Thread.ofPlatform().daemon().name("tck-aeron-spy").start(() -> {
            IdleStrategy idle = Await.idle();
            while (!Thread.currentThread().isInterrupted() && !spy.isClosed()) {
                idle.idle(spy.poll(assembler, 16));
            }
        });
        return AuthWire.recorder(listener.uri(), timeout -> {
            List<byte[]> recorded;
            synchronized (messages) {
                recorded = new ArrayList<>(messages);
            }
            if (recorded.size() < 3) {
                throw new AssertionError("the spy saw " + recorded.size() + " messages of the source, expected CONNECT, AUTH 1, AUTH 3");
            }
            try (AeronRawPeer.Stream s = AeronRawPeer.connect(listener.uri())) {
                // the CONNECT's HELLO after this peer's own envelope, then AUTH 1 and AUTH 3 as recorded
                s.write(Arrays.copyOfRange(recorded.get(0), Handshake.ENVELOPE_LENGTH, recorded.get(0).length));
                s.write(recorded.get(1));
                s.write(recorded.get(2));
                return Answer.parse(s.readUntilClosed(timeout));
            }
        }, () -> {
            poller.interrupt();
            poller.join(5000);
            spy.close();
            lease.close();
        });
    }

    @Override
    public Held hold(Listener listener, String authOptions, TransportContext context) throws Exception {
        AeronOptions o = options(listener);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        Authentication auth = Authentication.fromUri(TransportUri.parse(AuthTck.with(AuthTck.withoutAuth(listener.uri()), authOptions)), Role.SOURCE);
        Hello hello = new Hello(java.util.concurrent.ThreadLocalRandom.current().nextLong() | 1, Hello.FLAG_AUTHENTICATED, 1, 1 << 20,
                (int) TimeUnit.NANOSECONDS.toMillis(context.heartbeatIntervalNs()), (int) TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs()),
                context.layout().descriptors());
        AeronRawPeer.Stream s = AeronRawPeer.connect(listener.uri());
        Map<Integer, String> rejected = new ConcurrentHashMap<>();
        Aeron observer = Aeron.connect(new Aeron.Context().aeronDirectoryName(s.lease.directory())
                .publicationErrorFrameHandler((PublicationErrorFrame f) -> rejected.put(f.sessionId(), f.errorMessage())));
        List<ExclusivePublication> pubs = new ArrayList<>();
        try {
            byte[] connect = Handshake.connect(0, 0, hello);
            s.write(Arrays.copyOfRange(connect, Handshake.ENVELOPE_LENGTH, connect.length));
            Image reply = awaitReply(s, deadline);
            AuthExchange.Result result = AuthExchange.source(auth, hello, new AuthExchange.Channel() {
                @Override
                public void send(byte[] message) throws IOException {
                    s.write(AeronAuth.frame(FrameType.AUTH, 0, 0, 0, message));
                }

                @Override
                public byte[] receive(int maxBytes) {
                    return AeronAuth.parse(AeronAuth.receive(reply, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + maxBytes, deadline, "AUTH 2"),
                            "the destination").payload();
                }
            }, listener.uri());
            // The ANSWER goes out once the test's accept takes this source.
            Handshake.Answer answer = Handshake.answer(AeronAuth.receive(reply, Handshake.MAX_ANSWER_LENGTH, deadline, "the ANSWER"), o.ipc());
            if (answer.error() != null) {
                throw new AssertionError("the destination refused the held source: " + answer.error());
            }
            Handshake.Ack ack = answer.ack();
            ExclusivePublication urgent = publication(observer, pubs, o, ack.urgentPort(), ack.urgentStream(), deadline);
            offer(urgent, Handshake.join(hello.sessionId(), Handshake.URGENT_STREAM_INDEX, result), deadline);
            return new Held() {
                @Override
                public long sessionId() {
                    return hello.sessionId();
                }

                @Override
                public Answer forgeJoin(JoinProof proof, Duration timeout) {
                    long end = System.nanoTime() + timeout.toNanos();
                    ExclusivePublication forged = publication(observer, pubs, o, ack.backgroundPort(), ack.backgroundStream(), end);
                    byte[] mac = proof == null ? new byte[0] : proof.mac(hello.sessionId(), 0, 1);
                    byte[] join = new byte[Handshake.JOIN_LENGTH + mac.length];
                    MemorySegment j = MemorySegment.ofArray(join);
                    Wire.writePreamble(j, Wire.VERSION);
                    new FrameHeader(j.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, 1, hello.sessionId(), 0, mac.length);
                    System.arraycopy(mac, 0, join, Handshake.JOIN_LENGTH, mac.length);
                    offer(forged, join, end);
                    if (!Await.until(() -> rejected.containsKey(forged.sessionId()), end)) {
                        return new Answer(List.of(), null); // neither rejected nor admitted: the row fails on the missing refusal
                    }
                    return new Answer(List.of(FrameType.ERROR), rejected.get(forged.sessionId()));
                }

                @Override
                public Connection release(Duration timeout) {
                    long end = System.nanoTime() + timeout.toNanos();
                    ExclusivePublication bg = publication(observer, pubs, o, ack.backgroundPort(), ack.backgroundStream(), end);
                    offer(bg, Handshake.join(hello.sessionId(), 0, result), end);
                    return null; // a raw source: the test checks the destination's side
                }

                @Override
                public void close() {
                    pubs.forEach(ExclusivePublication::close);
                    observer.close();
                    s.close();
                }
            };
        } catch (RuntimeException | IOException | Error e) {
            pubs.forEach(ExclusivePublication::close);
            observer.close();
            s.close();
            throw e;
        }
    }

    private static Image awaitReply(AeronRawPeer.Stream s, long deadline) {
        if (!Await.until(() -> s.reply.imageCount() > 0, deadline)) {
            throw new AssertionError("no reply stream from the destination");
        }
        return s.reply.images().getFirst();
    }

    private static ExclusivePublication publication(Aeron aeron, List<ExclusivePublication> pubs, AeronOptions o, int port, int stream, long deadline) {
        ExclusivePublication p = aeron.addExclusivePublication(o.urgentChannel(o.host(), port, true), stream);
        pubs.add(p);
        if (!Await.until(p::isConnected, deadline)) {
            throw new AssertionError("a publication to the connection's stream " + stream + " did not connect");
        }
        return p;
    }

    private static void offer(ExclusivePublication p, byte[] message, long deadline) {
        long r = Await.offer(p, message, deadline);
        if (r < 0) {
            throw new AssertionError("offer failed: " + AeronConnection.code(r));
        }
    }
}
