package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Subscription;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.Wire;
import org.agrona.concurrent.IdleStrategy;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Raw Aeron access to a listener for the TCK's hostile-input cases: publications and a subscription of our own,
 * bypassing the transport's sending code. Each {@link RawStream#write} is one Aeron message; the first write of
 * {@link #open} carries the CONNECT envelope (where to answer) in front of the test's bytes, the transport-level
 * addressing that a TCP connection has for free.
 */
final class AeronRawPeer implements RawPeer {
    private static final long TIMEOUT_NS = TimeUnit.SECONDS.toNanos(30);

    /** Writes go to one publication; answers come from the reply subscription. */
    static final class Stream implements RawStream {
        final Drivers.Lease lease;
        final Subscription reply;
        private final List<ExclusivePublication> pubs = new ArrayList<>();
        private ExclusivePublication target;
        private byte[] prefix;
        private Image answers;

        Stream(Drivers.Lease lease, Subscription reply) {
            this.lease = lease;
            this.reply = reply;
        }

        @Override
        public void write(byte[] bytes) throws IOException {
            byte[] message = bytes;
            if (prefix != null) {
                message = new byte[prefix.length + bytes.length];
                System.arraycopy(prefix, 0, message, 0, prefix.length);
                System.arraycopy(bytes, 0, message, prefix.length, bytes.length);
                prefix = null;
            }
            long r = Await.offer(target, message, System.nanoTime() + TIMEOUT_NS);
            if (r < 0) {
                throw new IOException("raw offer of " + message.length + " bytes failed: " + AeronConnection.code(r));
            }
        }

        @Override
        public byte[] readUntilClosed(Duration timeout) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            long deadline = System.nanoTime() + timeout.toNanos();
            IdleStrategy idle = Await.idle();
            while (true) {
                if (answers == null && reply.imageCount() > 0) {
                    answers = reply.images().getFirst();
                }
                if (answers != null) {
                    int n = answers.poll((buffer, offset, length, header) -> {
                        byte[] b = new byte[length];
                        buffer.getBytes(offset, b);
                        out.writeBytes(b);
                    }, 64);
                    if (n == 0 && (answers.isClosed() || answers.isEndOfStream())) {
                        return out.toByteArray();
                    }
                }
                if (System.nanoTime() - deadline > 0) {
                    throw new AssertionError("the destination did not close its answer stream within " + timeout + " (got "
                            + out.size() + " bytes)");
                }
                idle.idle();
            }
        }

        @Override
        public void close() {
            for (ExclusivePublication p : pubs) {
                p.close();
            }
            reply.close();
            lease.close();
        }
    }

    static Stream connect(String listenerUri) {
        TransportUri uri = TransportUri.parse(listenerUri);
        AeronOptions o = AeronOptions.parse(uri, false);
        Drivers.Lease lease = o.aeronDir() != null ? Drivers.directory(o.aeronDir(), listenerUri) : Drivers.embedded(Drivers.Role.URGENT);
        long deadline = System.nanoTime() + TIMEOUT_NS;
        int replyStream = AeronTransportProvider.randomStreamId();
        Subscription reply = AeronTransportProvider.subscribe(lease, o.urgentChannel(o.ipc() ? null : "127.0.0.1", 0, false), replyStream,
                null, "the raw reply stream");
        Stream s = new Stream(lease, reply);
        int replyPort = o.ipc() ? 0 : Await.boundPort(reply, "the raw reply stream", deadline);
        ExclusivePublication rendezvous = lease.aeron().addExclusivePublication(o.urgentChannel(o.host(), Math.max(0, o.port()), true),
                o.streamId());
        s.pubs.add(rendezvous);
        if (!Await.until(rendezvous::isConnected, deadline)) {
            s.close();
            throw new AssertionError("raw peer: the listener at " + listenerUri + " did not connect");
        }
        s.target = rendezvous;
        s.prefix = new byte[Handshake.ENVELOPE_LENGTH];
        Handshake.envelope(MemorySegment.ofArray(s.prefix), replyPort, replyStream);
        return s;
    }

    @Override
    public RawStream open(String listenerUri) {
        return connect(listenerUri);
    }

    @Override
    public RawStream openSession(String listenerUri, List<RegionDescriptor> regions, boolean dataDigest, int maxPayload) throws IOException {
        long session = 0x7e57_5e55_1011L;
        Stream s = connect(listenerUri);
        try {
            AeronOptions o = AeronOptions.parse(TransportUri.parse(listenerUri), false);
            s.write(TransportTck.helloBytes(regions, Wire.VERSION, dataDigest, maxPayload, session));
            long deadline = System.nanoTime() + TIMEOUT_NS;
            MessageCollector answer = new MessageCollector(Handshake.MAX_ANSWER_LENGTH);
            if (!Await.until(() -> {
                if (s.answers == null && s.reply.imageCount() > 0) {
                    s.answers = s.reply.images().getFirst();
                }
                return s.answers != null && answer.poll(s.answers);
            }, deadline)) {
                throw new IOException("raw peer: no answer from " + listenerUri);
            }
            Handshake.Answer a = Handshake.answer(answer.message(), o.ipc());
            if (a.error() != null) {
                throw new IOException("raw peer: the destination refused: " + a.error());
            }
            Handshake.Ack ack = a.ack();
            ExclusivePublication urgent = s.lease.aeron().addExclusivePublication(o.urgentChannel(o.host(), ack.urgentPort(), true),
                    ack.urgentStream());
            s.pubs.add(urgent);
            ExclusivePublication bg = s.lease.aeron().addExclusivePublication(o.urgentChannel(o.host(), ack.backgroundPort(), true),
                    ack.backgroundStream());
            s.pubs.add(bg);
            if (!Await.until(() -> urgent.isConnected() && bg.isConnected(), deadline)) {
                throw new IOException("raw peer: the connection's streams did not connect");
            }
            if (Await.offer(urgent, Handshake.join(session, Handshake.URGENT_STREAM_INDEX, null), deadline) < 0
                    || Await.offer(bg, Handshake.join(session, 0, null), deadline) < 0) {
                throw new IOException("raw peer: JOIN failed");
            }
            s.target = bg;
            return s;
        } catch (IOException | RuntimeException e) {
            s.close();
            throw e;
        }
    }
}
