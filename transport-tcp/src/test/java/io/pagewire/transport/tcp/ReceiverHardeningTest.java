package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.kit.HandshakeBudget;
import io.pagewire.transport.spi.kit.SessionListener;
import io.pagewire.transport.spi.tck.TckRam;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.tck.Closer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The receiver defects an outside implementer found (issue 18), each reproduced with a raw-socket
 * source against a real listener: slow handshakes holding the admission slots, a verdict changed
 * after the acknowledgement, the same page on two channels in one round, JOINs bound to the wrong
 * session, errors naming the wrong connection; and the document's smaller rules (preamble, JOIN
 * payload, UTF-8 names).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ReceiverHardeningTest {
    private static final long MIB = 1 << 20;
    private final Closer cleanup = new Closer();

    @AfterEach
    void closeEverything() throws Exception {
        cleanup.closeAll();
    }

    private <T extends AutoCloseable> T closeLater(T c) {
        return cleanup.add(c);
    }

    private static int port(Listener l) {
        return TransportUri.parse(l.uri()).port();
    }

    /** The destination's handler: records pages, errors and the end, and acknowledges completion. */
    private static final class Dst implements MessageHandler {
        final AtomicReference<Connection> connection = new AtomicReference<>();
        final AtomicReference<TransportException> error = new AtomicReference<>();
        final CountDownLatch completed = new CountDownLatch(1);
        final CountDownLatch closed = new CountDownLatch(1);
        volatile TransportException closedWith;
        final AtomicLong pages = new AtomicLong();

        @Override
        public void onOpen(Connection c) {
            connection.set(c);
        }

        @Override
        public void onPages(LaneKind lane, int region, long first, int count) {
            pages.addAndGet(count);
        }

        @Override
        public void onComplete() {
            connection.get().urgent().sendComplete();
            completed.countDown();
        }

        @Override
        public void onError(TransportException e) {
            error.compareAndSet(null, e);
        }

        @Override
        public void onClosed(TransportException failure) {
            closedWith = failure;
            closed.countDown();
        }
    }

    private Listener listen(TckRam dst, String options) {
        return closeLater(Transports.listen("tcp://127.0.0.1:0" + options, new TransportContext().layout(dst.layout())));
    }

    /** Accepts the raw source's session on another thread (accept answers HELLO_ACK). */
    private CompletableFuture<Connection> acceptAsync(Listener l, Dst d) {
        return CompletableFuture.supplyAsync(() -> closeLater(l.accept(d, Duration.ofSeconds(30))));
    }

    private static byte[] pageData(long pageSize, long pages, int seed) {
        byte[] b = new byte[(int) (pageSize * pages)];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i * 31 + seed * 7 + (i >>> 12));
        }
        return b;
    }

    /** A listener over 4 MiB, a raw source's session with it, and the destination's handler. */
    private record Session(TckRam dst, Dst d, RawSource s) {
    }

    private Session open(int channels, long session) throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        Dst d = new Dst();
        CompletableFuture<Connection> accepted = acceptAsync(l, d);
        RawSource s = RawSource.handshake(port(l), dst.layout().descriptors(), channels, true, session);
        accepted.get(30, TimeUnit.SECONDS);
        return new Session(dst, d, s);
    }

    // ========================================================== 1. slow handshakes

    /**
     * 150 connections drip one byte every 50 ms (each reconnects when closed), more than the listener's
     * handshake slots: a real source still connects and migrates while they drip, and once they stop
     * nothing of theirs is held.
     */
    @Test
    void slowDripConnectionsCannotKeepARealSourceOut() throws Exception {
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        src.fillPattern(3, 0, 1);
        Listener l = listen(dst, "?handshake-timeout=1500");
        SessionListener<?, ?> admission = (SessionListener<?, ?>) l;
        int port = port(l);
        AtomicBoolean dripping = new AtomicBoolean(true);
        AtomicLong reconnects = new AtomicLong();
        Thread drip = Thread.ofPlatform().daemon().name("drip").start(() -> drip(port, 150, dripping, reconnects));
        try {
            // Let the drip fill every slot first: with a free slot the real source would need no eviction.
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (admission.handshakesInProgress() < admission.maxHandshakes() && System.nanoTime() < until) {
                Thread.onSpinWait();
            }
            assertEquals(admission.maxHandshakes(), admission.handshakesInProgress(), "the drip should hold every handshake slot");
            Dst d = new Dst();
            CompletableFuture<Connection> accepted = acceptAsync(l, d);
            Connection s = closeLater(Transports.connect("tcp://127.0.0.1:" + port + "?channels=2",
                    new TransportContext().layout(src.layout()).handler(new MessageHandler() { })));
            accepted.get(30, TimeUnit.SECONDS);
            s.background().sendPages(0, 0, src.pages(0));
            s.background().sendComplete();
            assertTrue(d.completed.await(30, TimeUnit.SECONDS), "the real source's migration did not complete while the drip went on");
            assertNull(d.error.get());
            assertEquals(src.crc(0), dst.crc(0));
            assertTrue(admission.evictions() > 0, "the real source's connections should have taken the slots of the oldest drips");
        } finally {
            dripping.set(false);
            drip.join();
        }
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while ((admission.handshakesInProgress() > 0 || admission.handshakeBytes() > 0) && System.nanoTime() < until) {
            Thread.onSpinWait();
        }
        assertEquals(0, admission.handshakesInProgress(), "handshake slots still held after the drip stopped");
        assertEquals(0, admission.handshakeBytes(), "handshake bytes still held after the drip stopped");
    }

    /** Keeps {@code n} connections each sending one byte of a preamble every 50 ms; reconnects closed ones. */
    private static void drip(int port, int n, AtomicBoolean dripping, AtomicLong reconnects) {
        byte[] preamble = RawSource.preamble(Wire.VERSION, 0);
        SocketChannel[] ch = new SocketChannel[n];
        int[] sent = new int[n];
        try {
            while (dripping.get()) {
                for (int i = 0; i < n && dripping.get(); i++) {
                    try {
                        if (ch[i] == null) {
                            ch[i] = SocketChannel.open(new InetSocketAddress("127.0.0.1", port));
                            sent[i] = 0;
                        }
                        ch[i].write(ByteBuffer.wrap(preamble, sent[i] % preamble.length, 1));
                        sent[i]++;
                    } catch (IOException e) {
                        reconnects.incrementAndGet();
                        close(ch[i]);
                        ch[i] = null;
                    }
                }
                TimeUnit.MILLISECONDS.sleep(50); // the drip's pace, not a wait for a condition
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            for (SocketChannel c : ch) {
                close(c);
            }
        }
    }

    private static void close(SocketChannel c) {
        if (c != null) {
            try {
                c.close();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    /**
     * Peers that each hold an almost complete 1 MiB HELLO hold at most the listener's handshake budget
     * between them; a real source still gets in; their memory is returned when they go.
     */
    @Test
    void largeHelloHoldersAreBoundedAndReleased() throws Exception {
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "?handshake-timeout=20000");
        SessionListener<?, ?> admission = (SessionListener<?, ?>) l;
        int port = port(l);
        List<Socket> holders = new ArrayList<>();
        try {
            byte[] head = RawSource.concat(RawSource.preamble(Wire.VERSION, 0), RawSource.frame(FrameType.HELLO, 0, 0, 0, null, false));
            MemorySegment h = MemorySegment.ofArray(head).asSlice(Wire.PREAMBLE_LENGTH);
            new FrameHeader(h).encode(FrameType.HELLO, 0, 0, 0, 0, Wire.MAX_HELLO_BYTES);
            byte[] body = new byte[Wire.MAX_HELLO_BYTES - 4096];
            for (int i = 0; i < 40; i++) {
                Socket s = RawSource.socket(port, "127.0.0.1");
                holders.add(s);
                s.getOutputStream().write(head);
                try {
                    s.getOutputStream().write(body);
                } catch (IOException refused) {
                    // refused for the budget meanwhile: that is the point
                }
                assertTrue(admission.handshakeBytes() <= HandshakeBudget.DEFAULT_BYTES, "budget exceeded: " + admission.handshakeBytes());
            }
            Dst d = new Dst();
            CompletableFuture<Connection> accepted = acceptAsync(l, d);
            Connection s = closeLater(Transports.connect("tcp://127.0.0.1:" + port,
                    new TransportContext().layout(src.layout()).handler(new MessageHandler() { })));
            accepted.get(30, TimeUnit.SECONDS);
            s.background().sendComplete();
            assertTrue(d.completed.await(30, TimeUnit.SECONDS), "the real source did not get in while large HELLOs were held");
        } finally {
            for (Socket s : holders) {
                s.close();
            }
        }
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while ((admission.handshakesInProgress() > 0 || admission.handshakeBytes() > 0) && System.nanoTime() < until) {
            Thread.onSpinWait();
        }
        assertEquals(0, admission.handshakeBytes(), "handshake bytes still held after the holders closed");
        assertEquals(0, admission.handshakesInProgress());
    }

    // ========================================================== 2. one verdict

    /** A second COMPLETE and pages after COMPLETE, sent after the acknowledgement: ignored; both sides saw success. */
    @Test
    void framesAfterTheAcknowledgementDoNotTurnSuccessIntoFailure() throws Exception {
        Session x = open(1, 0x5eed_0001L);
        TckRam dst = x.dst();
        Dst d = x.d();
        try (RawSource s = x.s()) {
            long ps = dst.layout().region(0).pageSize();
            s.send(0, RawSource.frame(FrameType.PAGES, 0, 0, 1, pageData(ps, 1, 1), true));
            s.send(0, RawSource.frame(FrameType.COMPLETE, 0, 0, 1, null, false));
            assertEquals(FrameType.COMPLETE, s.nextUrgentFrame().type(), "the acknowledgement");
            s.send(0, RawSource.frame(FrameType.COMPLETE, 0, 0, 1, null, false));
            s.send(0, RawSource.frame(FrameType.PAGES, 0, 1, 1, pageData(ps, 1, 2), true));
            s.background[0].shutdownOutput();
            s.urgent.shutdownOutput();
            byte[] rest = RawSource.readUntilClosed(s.urgent, Duration.ofSeconds(20));
            assertFalse(RawSource.frameTypes(rest).contains(FrameType.ERROR), "an ERROR after the acknowledgement");
        }
        assertTrue(d.closed.await(20, TimeUnit.SECONDS));
        assertNull(d.closedWith, "the destination turned an acknowledged migration into a failure");
        assertNull(d.error.get());
    }

    /**
     * Pages after COMPLETE on one channel while another has not completed: the destination reads no further
     * on a channel than its COMPLETE until every channel completed (the barrier), and acknowledges then; what
     * followed is read after the acknowledgement and ignored. One verdict, the same on both sides: success.
     */
    @Test
    void framesAfterCompleteOnOneOfTwoChannelsAreIgnoredOnceAcknowledged() throws Exception {
        Session x = open(2, 0x5eed_0002L);
        TckRam dst = x.dst();
        Dst d = x.d();
        try (RawSource s = x.s()) {
            long ps = dst.layout().region(0).pageSize();
            s.send(0, RawSource.frame(FrameType.ZERO_RUN, 0, 0, dst.pages(0), null, false));
            s.send(0, RawSource.frame(FrameType.COMPLETE, 0, 0, 0, null, false));
            s.send(0, RawSource.frame(FrameType.PAGES, 0, 0, 1, pageData(ps, 1, 1), true));
            s.send(1, RawSource.frame(FrameType.COMPLETE, 0, 0, 0, null, false));
            assertEquals(FrameType.COMPLETE, s.nextUrgentFrame().type(), "the acknowledgement");
            for (Socket b : s.background) {
                b.shutdownOutput();
            }
            s.urgent.shutdownOutput();
            byte[] rest = RawSource.readUntilClosed(s.urgent, Duration.ofSeconds(20));
            assertFalse(RawSource.frameTypes(rest).contains(FrameType.ERROR), "an ERROR after the acknowledgement");
        }
        assertTrue(d.closed.await(20, TimeUnit.SECONDS));
        assertNull(d.closedWith, "the destination turned an acknowledged migration into a failure");
        assertNull(d.error.get());
        assertEquals(0, d.pages.get(), "pages after COMPLETE must not be delivered");
    }

    // ========================================================== 4. same page on two channels

    /** The same pages on two channels at once in one round: refused by rule, never a false digest mismatch. */
    @Test
    void samePageOnTwoChannelsInOneRoundIsRefusedByNameNeverAsCorruption() throws Exception {
        for (int run = 0; run < 4; run++) {
            TckRam dst = closeLater(TckRam.of(4 * MIB));
            Listener l = listen(dst, "");
            Dst d = new Dst();
            CompletableFuture<Connection> accepted = acceptAsync(l, d);
            try (RawSource s = RawSource.handshake(port(l), dst.layout().descriptors(), 2, true, 0x5eed_0100L + run)) {
                accepted.get(30, TimeUnit.SECONDS);
                long ps = dst.layout().region(0).pageSize();
                byte[] a = RawSource.frame(FrameType.PAGES, 0, 0, 64, pageData(ps, 64, 1), true);
                byte[] b = RawSource.frame(FrameType.PAGES, 0, 0, 64, pageData(ps, 64, 2), true);
                CompletableFuture<Void> other = CompletableFuture.runAsync(() -> {
                    try {
                        s.send(1, b);
                    } catch (IOException e) {
                        // refused and closed: the answer says why
                    }
                });
                try {
                    s.send(0, a);
                } catch (IOException e) {
                    // as above
                }
                other.get(20, TimeUnit.SECONDS);
                String error = TransportTck.errorText(RawSource.readUntilClosed(s.urgent, Duration.ofSeconds(20)));
                assertTrue(error.contains("already sent in this round"), "run " + run + ": " + error);
                assertFalse(error.contains("digest"), "run " + run + ": a false corruption report: " + error);
            }
        }
    }

    /** The same page in the next round (after the barrier) is fine, on any channel. */
    @Test
    void samePageInTheNextRoundOnAnotherChannelIsAccepted() throws Exception {
        Session x = open(2, 0x5eed_0200L);
        TckRam dst = x.dst();
        Dst d = x.d();
        try (RawSource s = x.s()) {
            long ps = dst.layout().region(0).pageSize();
            byte[] second = pageData(ps, 8, 2);
            s.send(0, RawSource.frame(FrameType.PAGES, 0, 0, 8, pageData(ps, 8, 1), true));
            s.send(1, RawSource.frame(FrameType.ZERO_RUN, 0, 8, 8, null, false));
            for (int c = 0; c < 2; c++) {
                s.send(c, RawSource.frame(FrameType.ROUND_END, 0, 0, 0, null, false));
            }
            s.send(1, RawSource.frame(FrameType.PAGES, 0, 0, 8, second, true));
            s.send(0, RawSource.frame(FrameType.ZERO_RUN, 0, 8, 8, null, false));
            s.send(0, RawSource.frame(FrameType.COMPLETE, 0, 0, 8, null, false));
            s.send(1, RawSource.frame(FrameType.COMPLETE, 0, 0, 8, null, false));
            assertEquals(FrameType.COMPLETE, s.nextUrgentFrame().type());
            assertEquals(MemorySegment.ofArray(second).asSlice(0, 8 * ps).mismatch(dst.memory(0).asSlice(0, 8 * ps)), -1);
        }
        assertNull(d.error.get());
    }

    /** Round numbers must increase from one barrier to the next. */
    @Test
    void roundNumbersThatDoNotIncreaseAreRefused() throws Exception {
        Session x = open(1, 0x5eed_0300L);
        TckRam dst = x.dst();
        Dst d = x.d();
        try (RawSource s = x.s()) {
            s.send(0, RawSource.frame(FrameType.ROUND_END, 0, 5, 0, null, false));
            s.send(0, RawSource.frame(FrameType.ROUND_END, 0, 5, 0, null, false));
            String error = TransportTck.errorText(RawSource.readUntilClosed(s.urgent, Duration.ofSeconds(20)));
            assertTrue(error.contains("round 5 after round 5"), error);
        }
    }

    // ========================================================== 5. JOIN bound to its session

    /** A JOIN from another host than the HELLO's is refused; the source's own JOIN still joins. */
    @Test
    void joinFromAnotherPeerIsRefusedAndTheSourceStillJoins() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        int port = port(l);
        long session = 0x5eed_0400L;
        Dst d = new Dst();
        CompletableFuture<Connection> accepted = acceptAsync(l, d);
        try (Socket urgent = RawSource.socket(port, "127.0.0.1"); Socket stranger = RawSource.socket(port, "127.0.0.2");
             Socket own = RawSource.socket(port, "127.0.0.1")) {
            urgent.getOutputStream().write(RawSource.hello(dst.layout().descriptors(), 1, true, session));
            stranger.getOutputStream().write(RawSource.join(session, 0, 1));
            String refusal = TransportTck.errorText(RawSource.readUntilClosed(stranger, Duration.ofSeconds(20)));
            assertTrue(refusal.contains("must come from the peer that sent the HELLO"), refusal);
            own.getOutputStream().write(RawSource.join(session, 0, 1));
            accepted.get(30, TimeUnit.SECONDS);
        }
    }

    /** A stranger's JOIN for a channel before the source's own: both refused, the session never starts. */
    @Test
    void secondJoinForAChannelRefusesBothAndTheSessionNeverStarts() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        int port = port(l);
        long session = 0x5eed_0500L;
        try (Socket urgent = RawSource.socket(port, "127.0.0.1"); Socket stranger = RawSource.socket(port, "127.0.0.1");
             Socket own = RawSource.socket(port, "127.0.0.1")) {
            urgent.getOutputStream().write(RawSource.hello(dst.layout().descriptors(), 2, true, session));
            stranger.getOutputStream().write(RawSource.join(session, 0, 2));
            own.getOutputStream().write(RawSource.join(session, 0, 2));
            // Whichever JOIN came second is told; the first is closed with the session.
            byte[] toStranger = RawSource.readUntilClosed(stranger, Duration.ofSeconds(20));
            byte[] toOwn = RawSource.readUntilClosed(own, Duration.ofSeconds(20));
            String refusal = TransportTck.errorText(toStranger.length > 0 ? toStranger : toOwn);
            assertTrue(refusal.contains("joined twice"), refusal);
            String sourceTold = TransportTck.errorText(RawSource.readUntilClosed(urgent, Duration.ofSeconds(20)));
            assertTrue(sourceTold.contains("joined twice"), sourceTold);
        }
        TransportException none = assertThrows(TransportException.class, () -> l.accept(new Dst(), Duration.ofMillis(500)));
        assertEquals(TransportException.Kind.TIMEOUT, none.kind(), none.getMessage());
    }

    /** Two HELLOs with one session id: both refused. */
    @Test
    void twoHellosWithOneSessionIdAreBothRefused() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        int port = port(l);
        long session = 0x5eed_0600L;
        try (Socket first = RawSource.socket(port, "127.0.0.1"); Socket second = RawSource.socket(port, "127.0.0.1");
             Socket join = RawSource.socket(port, "127.0.0.1")) {
            first.getOutputStream().write(RawSource.hello(dst.layout().descriptors(), 2, true, session));
            second.getOutputStream().write(RawSource.hello(dst.layout().descriptors(), 2, true, session));
            for (Socket s : List.of(first, second)) {
                String refusal = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
                assertTrue(refusal.contains("claimed by two HELLOs"), refusal);
            }
            join.getOutputStream().write(RawSource.join(session, 0, 2));
            String refusal = TransportTck.errorText(RawSource.readUntilClosed(join, Duration.ofSeconds(20)));
            assertTrue(refusal.contains("session"), refusal);
        }
        TransportException none = assertThrows(TransportException.class, () -> l.accept(new Dst(), Duration.ofMillis(500)));
        assertEquals(TransportException.Kind.TIMEOUT, none.kind());
    }

    // ========================================================== 6. errors name the right connection

    @Test
    void anErrorOnABackgroundChannelNamesThatChannelsOwnAddress() throws Exception {
        Session x = open(2, 0x5eed_0700L);
        TckRam dst = x.dst();
        Dst d = x.d();
        try (RawSource s = x.s()) {
            s.send(1, RawSource.frame(77, 0, 0, 0, null, false));
            RawSource.readUntilClosed(s.urgent, Duration.ofSeconds(20));
            assertTrue(d.closed.await(20, TimeUnit.SECONDS));
            String message = d.closedWith.getMessage();
            assertTrue(message.contains("background channel 1") && message.contains(":" + s.background[1].getLocalPort()),
                    "should name channel 1's port " + s.background[1].getLocalPort() + ": " + message);
            assertFalse(message.contains(":" + s.urgent.getLocalPort()), "names the urgent connection: " + message);
        }
    }

    // ========================================================== smaller rules of the document

    @Test
    void versionsAtOrAbove2To31AreRefusedNamingBothVersions() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        try (Socket s = RawSource.socket(port(l), "127.0.0.1")) {
            byte[] hello = RawSource.hello(dst.layout().descriptors(), 1, true, 1);
            MemorySegment.ofArray(hello).set(Wire.U32, 8, 0x8000_0001);
            s.getOutputStream().write(hello);
            String error = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
            assertTrue(error.contains("version 1") && error.contains("version 2147483649"), error);
        }
    }

    /**
     * Found by the hostile source (conformance/hostile_source.py): a HELLO whose payload was still arriving at the
     * handshake deadline was refused with two contradicting counts ("(0 of 65537 bytes arrived) ... (48 of 16384
     * bytes)", the second one the read buffer's); the refusal now counts the payload's bytes.
     */
    @Test
    void aHelloCutShortAtTheDeadlineIsRefusedCountingItsPayloadBytes() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "?handshake-timeout=300");
        try (Socket s = RawSource.socket(port(l), "127.0.0.1")) {
            byte[] head = RawSource.concat(RawSource.preamble(Wire.VERSION, 0), RawSource.frame(FrameType.HELLO, 0, 0, 0, null, false));
            new FrameHeader(MemorySegment.ofArray(head).asSlice(Wire.PREAMBLE_LENGTH)).encode(FrameType.HELLO, 0, 0, 0, 0, 65537);
            s.getOutputStream().write(RawSource.concat(head, new byte[20000])); // more than one 16 KiB read of it
            String error = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
            assertTrue(error.contains("HELLO payload was still arriving at the handshake deadline (20000 of 65537 bytes)"), error);
        }
    }

    /**
     * Found by the hostile source (conformance/hostile_source.py): a source that asks for authentication in its HELLO and
     * then sends no AUTH message was closed without a word at the handshake deadline; it is refused in words, as every
     * handshake that misses the deadline is.
     */
    @Test
    void anAuthenticatingSourceThatSendsNoAuthMessageIsRefusedAtTheDeadline() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "?handshake-timeout=300&psk-file=" + io.pagewire.transport.spi.tck.TckCredentials.get().psk);
        try (Socket s = RawSource.socket(port(l), "127.0.0.1")) {
            byte[] hello = RawSource.hello(dst.layout().descriptors(), 1, true, 77);
            int flags = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + 8; // the HELLO payload's flags (not under the header CRC)
            MemorySegment.ofArray(hello).set(Wire.U32, flags, Hello.FLAG_DATA_DIGEST | Hello.FLAG_AUTHENTICATED);
            s.getOutputStream().write(hello);
            String error = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
            assertTrue(error.contains("the handshake did not complete in time: the source's AUTH message had not arrived"), error);
        }
    }

    /**
     * Found by the hostile source (conformance/hostile_source.py): a handler's refusal reached the source as
     * "java.lang.IllegalArgumentException: ..."; it is told the handler's sentence, and a fault is still named by its class.
     */
    @Test
    void aHandlersRefusalReachesTheSourceInItsOwnWords() throws Exception {
        for (RuntimeException thrown : List.of(new IllegalArgumentException("no zero runs here, please"), new NullPointerException())) {
            TckRam dst = closeLater(TckRam.of(4 * MIB));
            Listener l = listen(dst, "");
            CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> closeLater(l.accept(new MessageHandler() {
                @Override
                public void onZeroRun(LaneKind lane, int region, long first, long count) {
                    throw thrown;
                }
            }, Duration.ofSeconds(30))));
            try (RawSource s = RawSource.handshake(port(l), dst.layout().descriptors(), 1, true, 0x5eed_0900L)) {
                accepted.get(30, TimeUnit.SECONDS);
                s.send(0, RawSource.frame(FrameType.ZERO_RUN, 0, 0, 1, null, false));
                String error = TransportTck.errorText(RawSource.readUntilClosed(s.urgent, Duration.ofSeconds(20)));
                String expected = thrown instanceof IllegalArgumentException ? "message handler failed: no zero runs here, please"
                        : "message handler failed: java.lang.NullPointerException";
                assertTrue(error.contains(expected), error);
            }
        }
    }

    @Test
    void preambleReservedFieldMustBeZero() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        try (Socket s = RawSource.socket(port(l), "127.0.0.1")) {
            byte[] hello = RawSource.hello(dst.layout().descriptors(), 1, true, 1);
            MemorySegment.ofArray(hello).set(Wire.U32, 12, 7);
            s.getOutputStream().write(hello);
            String error = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
            assertTrue(error.contains("reserved field 0x7 must be 0"), error);
        }
    }

    @Test
    void joinWithAPayloadIsRefused() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        try (Socket s = RawSource.socket(port(l), "127.0.0.1")) {
            s.getOutputStream().write(RawSource.concat(RawSource.preamble(Wire.VERSION, 0),
                    RawSource.frame(FrameType.JOIN, 1, 9, 0, new byte[100], false)));
            String error = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
            assertTrue(error.contains("invalid JOIN frame: payload of 100 bytes"), error);
        }
    }

    @Test
    void invalidUtf8RegionNameIsRefusedByName() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, "");
        List<RegionDescriptor> regions = dst.layout().descriptors();
        try (Socket s = RawSource.socket(port(l), "127.0.0.1")) {
            byte[] hello = RawSource.hello(regions, 1, true, 1);
            // The first region's name starts right after the fixed part and its u16 length.
            int nameAt = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + 28 + 2;
            assertEquals(regions.getFirst().name().charAt(0), (char) hello[nameAt]);
            hello[nameAt] = (byte) 0xC3;
            hello[nameAt + 1] = (byte) 0x28; // an invalid 2-byte sequence
            s.getOutputStream().write(hello);
            String error = TransportTck.errorText(RawSource.readUntilClosed(s, Duration.ofSeconds(20)));
            assertTrue(error.contains("is not valid UTF-8"), error);
        }
    }

    @Test
    void peerErrorTextIsEscapedInTheFailure() throws Exception {
        Session x = open(1, 0x5eed_0800L);
        TckRam dst = x.dst();
        Dst d = x.d();
        try (RawSource s = x.s()) {
            byte[] text = "bad\r\nMigration status: completed\u001b[2J\u202e".getBytes(StandardCharsets.UTF_8);
            s.urgent.getOutputStream().write(RawSource.frame(FrameType.ERROR, 0, 0, 0, text, false));
            assertTrue(d.closed.await(20, TimeUnit.SECONDS));
            String m = d.closedWith.getMessage();
            assertFalse(m.chars().anyMatch(c -> c < 0x20 || c == 0x202e), "unescaped: " + m);
            assertTrue(m.contains("bad\\u000d\\u000aMigration status: completed\\u001b[2J\\u202e"), m);
        }
    }

    // ========================================================== placers that reserve memory (issue 16)

    /**
     * A placer that lends its own memory for background frames (as a postcopy destination's second
     * mapping): a whole frame lands there and is placed from it; a frame cut off mid-payload is
     * abandoned, never placed.
     */
    @Test
    void aFrameLandsInReservedMemoryAndAFrameCutOffIsAbandoned() throws Exception {
        TckRam ram = closeLater(TckRam.of(4 * MIB));
        long ps = ram.layout().region(0).pageSize();
        java.lang.foreign.Arena arena = closeLater(java.lang.foreign.Arena.ofShared());
        MemorySegment lent = arena.allocate(4 * MIB, 4096);
        java.util.concurrent.ConcurrentLinkedQueue<String> calls = new java.util.concurrent.ConcurrentLinkedQueue<>();
        CountDownLatch abandoned = new CountDownLatch(1);
        io.pagewire.transport.spi.PagePlacer placer = new io.pagewire.transport.spi.PagePlacer() {
            @Override
            public void place(int regionId, long first, int count, MemorySegment data) {
                calls.add("place " + first + " " + count + (data.address() == lent.address() + first * ps ? " reserved" : " staged"));
            }

            @Override
            public MemorySegment reserve(int regionId, long first, int count) {
                calls.add("reserve " + first + " " + count);
                return lent.asSlice(first * ps, count * ps);
            }

            @Override
            public void abandon(int regionId, long first, int count) {
                calls.add("abandon " + first + " " + count);
                abandoned.countDown();
            }
        };
        var layout = io.pagewire.transport.spi.RamLayout.of(ram.layout().region(0).withPlacer(placer));
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0", new TransportContext().layout(layout)));
        Dst d = new Dst();
        CompletableFuture<Connection> accepted = acceptAsync(l, d);
        try (RawSource s = RawSource.handshake(port(l), layout.descriptors(), 1, true, 0x5eed_1600L)) {
            accepted.get(30, TimeUnit.SECONDS);
            byte[] data = pageData(ps, 4, 16);
            s.send(0, RawSource.frame(FrameType.PAGES, 0, 0, 4, data, true));
            byte[] cut = RawSource.frame(FrameType.PAGES, 0, 4, 4, pageData(ps, 4, 17), true);
            s.send(0, java.util.Arrays.copyOf(cut, FrameHeader.LENGTH + (int) (2 * ps))); // half the payload, then the end
            s.background[0].close();
            assertTrue(abandoned.await(30, TimeUnit.SECONDS), "the cut frame's reservation was abandoned: " + calls);
            assertEquals(List.of("reserve 0 4", "place 0 4 reserved", "reserve 4 4", "abandon 4 4"), List.copyOf(calls));
            assertEquals(-1, MemorySegment.ofArray(data).mismatch(lent.asSlice(0, 4 * ps)), "the whole frame landed in the lent memory");
            assertEquals(4, d.pages.get(), "only the whole frame was reported");
        }
    }
}
