package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * {@link AuthWire} on the simulated fabric: a tap records what a real source's queue pairs send (connect private
 * data and SEND messages, as the bytes went), a hold keeps its background queue pair's connect request back, and
 * {@link RdmaRawPeer}'s raw queue pairs play recordings back and present forged JOINs.
 */
final class RdmaAuthWire implements AuthWire {
    private final SimFabric fabric = SimFabric.instance();

    private static int port(Listener l) {
        return TransportUri.parse(l.uri()).port();
    }

    /** What one source queue pair sent. */
    private static final class Recorded {
        byte[] privateData = new byte[0];
        final List<byte[]> messages = new ArrayList<>();
    }

    /** @return the raw queue pair's answer: everything received (envelopes removed) until the destination disconnected */
    private static Answer exchange(Listener l, byte[] privateData, List<byte[]> messages, Duration timeout) throws Exception {
        try (RdmaRawPeer.RawQp qp = new RdmaRawPeer().new RawQp(l.uri(), null, "tck-replay", privateData)) {
            for (int i = 0; i < messages.size(); i++) {
                qp.sendMessage(messages.get(i));
                if (i + 1 < messages.size()) {
                    qp.awaitMessages(i + 1, timeout); // as the source did: its next message answers the destination's
                }
            }
            return Answer.parse(qp.readUntilClosed(timeout));
        }
    }

    @Override
    public Recorder record(Listener listener) {
        Map<QueuePair, Recorded> byQp = new LinkedHashMap<>();
        AutoCloseable tap = fabric.tap(port(listener), new SimFabric.Tap() {
            @Override
            public void connecting(QueuePair qp, byte[] privateData) {
                synchronized (byQp) {
                    byQp.computeIfAbsent(qp, q -> new Recorded()).privateData = privateData;
                }
            }

            @Override
            public void sent(QueuePair qp, byte[] message) {
                synchronized (byQp) {
                    Recorded r = byQp.computeIfAbsent(qp, q -> new Recorded());
                    if (r.messages.size() < 4) {
                        r.messages.add(message);
                    }
                }
            }
        });
        return AuthWire.recorder(listener.uri(), timeout -> {
            List<Recorded> qps = snapshot(byQp);
            // the urgent queue pair connected first: HELLO + RDMA_SETUP + AUTH 1, then AUTH 3, with its connect request
            Recorded urgent = qps.getFirst();
            Answer answer = exchange(listener, urgent.privateData, urgent.messages.subList(0, 2), timeout);
            for (Recorded bg : qps.subList(1, qps.size())) {
                Answer a = exchange(listener, bg.privateData, bg.messages.subList(0, 1), timeout); // its JOIN, MAC and all
                if (a.admitted()) {
                    return a;
                }
            }
            return answer;
        }, tap);
    }

    /** @return the queue pairs recorded so far, in the order they first appeared */
    private static List<Recorded> snapshot(Map<QueuePair, Recorded> byQp) {
        synchronized (byQp) {
            return new ArrayList<>(byQp.values());
        }
    }

    @Override
    public Held hold(Listener listener, String authOptions, TransportContext context) throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        CountDownLatch held = new CountDownLatch(1);
        long[] session = new long[1];
        AutoCloseable hold = fabric.hold(port(listener), pd -> {
            Protocol.ConnectRequest r = Protocol.ConnectRequest.decode(pd);
            if (r == null || r.urgent()) {
                return false;
            }
            session[0] = r.sessionId(); // the background queue pair names its session
            return true;
        }, release, held::countDown);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(
                () -> Transports.connect(AuthTck.with(AuthTck.withoutAuth(listener.uri()), authOptions), context), AuthTck.THREADS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!held.await(10, TimeUnit.MILLISECONDS)) {
            if (source.isDone() || System.nanoTime() > deadline) {
                hold.close();
                release.countDown();
                source.get().close(); // throws the source's failure
                throw new AssertionError("the source's background queue pair did not connect within 30 s");
            }
        }
        return new Held() {
            @Override
            public long sessionId() {
                return session[0];
            }

            @Override
            public Answer forgeJoin(JoinProof proof, Duration timeout) throws Exception {
                long id = session[0];
                byte[] mac = proof == null ? new byte[0] : proof.mac(id, 0, 1);
                byte[] join = new byte[Protocol.ENVELOPE + Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + mac.length];
                MemorySegment j = MemorySegment.ofArray(join).asSlice(Protocol.ENVELOPE);
                Wire.writePreamble(j, Wire.VERSION);
                new FrameHeader(j.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, 1, id, 0, mac.length);
                System.arraycopy(mac, 0, join, Protocol.ENVELOPE + Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, mac.length);
                // a stranger naming the session in its connect request: created in the session's protection domain
                return exchange(listener, Protocol.joinRequest(id), List.of(join), timeout);
            }

            @Override
            public Connection release(Duration timeout) throws Exception {
                release.countDown();
                hold.close();
                return source.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            }

            @Override
            public void close() throws Exception {
                release.countDown();
                hold.close();
                source.thenAccept(Connection::close);
            }
        };
    }
}
