package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TckRam;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.tck.Closer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code urgent-channel=shared}: the urgent lane on background channel 0, beyond what the TCK
 * checks for every URI. Urgent frames written by one thread while another streams bulk frames on
 * the same socket must arrive whole, in lane order, on the right lane, and must not count as
 * background pages; hostile use of the URGENT_LANE flag is refused.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SharedChannelTest {
    private static final long MIB = 1 << 20;
    private final Closer cleanup = new Closer();

    @AfterEach
    void closeEverything() throws Exception {
        cleanup.closeAll();
    }

    private <T extends AutoCloseable> T closeLater(T c) {
        return cleanup.add(c);
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"channels=1&urgent-channel=shared", "channels=2&urgent-channel=shared&data-digest=false"})
    void urgentFramesCrossBetweenBulkFramesWholeInOrderAndOnTheirLane(String options) throws Exception {
        TckRam src = closeLater(TckRam.of(16 * MIB));
        TckRam dst = closeLater(TckRam.of(16 * MIB));
        src.fillPattern(5, 0, 1);
        dst.fill((byte) 0x5A);
        long pages = src.pages(0);
        // What the destination saw on the urgent lane, in order: "P<page>" for pages, "C<text>" for controls.
        BlockingQueue<String> urgent = new ArrayBlockingQueue<>(1024);
        AtomicReference<String> violation = new AtomicReference<>();
        AtomicLong backgroundPages = new AtomicLong();
        AtomicReference<Connection> dstConn = new AtomicReference<>();
        CountDownLatch dstComplete = new CountDownLatch(1);
        AtomicReference<TransportException> dstError = new AtomicReference<>();
        MessageHandler d = new MessageHandler() {
            @Override
            public void onPages(LaneKind lane, int region, long first, int count) {
                if (lane == LaneKind.URGENT) {
                    offer(urgent, "P" + first, violation);
                } else {
                    backgroundPages.addAndGet(count);
                }
            }

            @Override
            public void onControl(LaneKind lane, MemorySegment payload) {
                String text = new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (lane != LaneKind.URGENT) {
                    violation.compareAndSet(null, "control '" + text + "' arrived on the " + lane + " lane");
                }
                offer(urgent, "C" + text, violation);
            }

            @Override
            public void onComplete() {
                dstConn.get().urgent().sendComplete();
                dstComplete.countDown();
            }

            @Override
            public void onError(TransportException e) {
                dstError.compareAndSet(null, e);
            }
        };
        AtomicReference<Connection> srcConn = new AtomicReference<>();
        CountDownLatch srcComplete = new CountDownLatch(1);
        AtomicReference<TransportException> srcError = new AtomicReference<>();
        MessageHandler s = new MessageHandler() {
            @Override
            public void onPageRequest(int region, long first, int count) {
                // Two urgent frames per request, written while channel 0's sender streams bulk frames.
                srcConn.get().urgent().sendPages(region, first, count);
                srcConn.get().urgent().sendControl(MemorySegment.ofArray(("after " + first).getBytes(StandardCharsets.UTF_8)));
            }

            @Override
            public void onComplete() {
                srcComplete.countDown();
            }

            @Override
            public void onError(TransportException e) {
                srcError.compareAndSet(null, e);
            }
        };
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?" + options, new TransportContext().layout(dst.layout())));
        CompletableFuture<Connection> connecting = CompletableFuture.supplyAsync(
                () -> Transports.connect(l.uri(), new TransportContext().layout(src.layout()).handler(s)));
        dstConn.set(closeLater(l.accept(d, Duration.ofSeconds(30))));
        srcConn.set(closeLater(connecting.get(30, TimeUnit.SECONDS)));
        Connection source = srcConn.get();
        Connection destination = dstConn.get();

        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong rounds = new AtomicLong();
        CompletableFuture<Void> push = CompletableFuture.runAsync(() -> {
            for (long round = 1; !stop.get(); round++) {
                source.background().sendPages(0, 0, pages);
                source.background().sendRoundEnd(round);
                rounds.set(round);
            }
        });
        int requests = 200;
        int duringBulk = 0;
        for (int i = 0; i < requests; i++) {
            long page = (i * 7919L) % pages;
            boolean bulkRunning = !push.isDone() && destination.stats().pagesReceived() > 0;
            destination.urgent().sendPageRequest(0, page, 1);
            assertEquals("P" + page, urgent.poll(10, TimeUnit.SECONDS), "request " + i + ": the answering page, first on the urgent lane");
            assertEquals("Cafter " + page, urgent.poll(10, TimeUnit.SECONDS), "request " + i + ": then the control sent after it");
            long at = page * 4096;
            assertEquals(-1, src.memory(0).asSlice(at, 4096).mismatch(dst.memory(0).asSlice(at, 4096)), "page " + page + " content");
            if (bulkRunning && !push.isDone()) {
                duringBulk++;
            }
        }
        stop.set(true);
        push.get(30, TimeUnit.SECONDS);
        source.background().sendComplete();
        assertTrue(dstComplete.await(30, TimeUnit.SECONDS), "destination completion");
        assertTrue(srcComplete.await(30, TimeUnit.SECONDS), "acknowledgement at the source");
        assertNull(dstError.get(), () -> "destination: " + dstError.get());
        assertNull(srcError.get(), () -> "source: " + srcError.get());
        assertNull(violation.get(), violation.get());
        assertTrue(duringBulk > requests / 2, "only " + duringBulk + " of " + requests + " requests were answered while bulk frames flowed");
        // Whole rounds only (the push checks the flag between rounds); the urgent answers are not background pages,
        // and COMPLETE's per-channel page count matched at the destination (else it would have failed).
        assertEquals(rounds.get() * pages, backgroundPages.get(), "background pages");
        assertEquals(rounds.get() * pages + requests, destination.stats().pagesReceived(), "background rounds plus urgent answers");
        assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
    }

    private static void offer(BlockingQueue<String> q, String what, AtomicReference<String> violation) {
        if (!q.offer(what)) {
            violation.compareAndSet(null, "urgent log full at " + what);
        }
    }

    // ======================================================================= hostile use of the flag

    /** A raw source session: socket {@code first} carries HELLO and the destination's answers; {@code second} is channel 1 or null. */
    private record RawSession(Socket first, Socket second, Connection accepted, AtomicReference<TransportException> error,
                              CountDownLatch errored) {
    }

    /** A dedicated session with one background channel, or a shared one with {@code channels} channels. */
    private RawSession rawSession(boolean shared, int channels, TckRam dst) throws Exception {
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0", new TransportContext().layout(dst.layout())));
        AtomicReference<TransportException> error = new AtomicReference<>();
        CountDownLatch errored = new CountDownLatch(1);
        MessageHandler h = new MessageHandler() {
            @Override
            public void onError(TransportException e) {
                error.compareAndSet(null, e);
                errored.countDown();
            }
        };
        CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> l.accept(h, Duration.ofSeconds(30)));
        long session = 0x5ade_c4a1L;
        InetSocketAddress at = new InetSocketAddress("127.0.0.1", io.pagewire.transport.spi.TransportUri.parse(l.uri()).port());
        Socket first = closeLater(new Socket());
        first.connect(at, 10_000);
        Socket second = null;
        if (!shared || channels > 1) {
            second = closeLater(new Socket());
            second.connect(at, 10_000);
        }
        if (shared) {
            first.getOutputStream().write(TcpRawPeer.sharedHello(dst.layout().descriptors(), true, 256 * 1024, session, channels));
            for (int c = 1; c < channels; c++) {
                second.getOutputStream().write(join(session, channels, c));
            }
        } else {
            first.getOutputStream().write(TransportTck.helloBytes(dst.layout().descriptors(), Wire.VERSION, true, 256 * 1024, session));
            second.getOutputStream().write(join(session, 1, 0));
        }
        TcpRawPeer.readAck(first);
        return new RawSession(first, second, closeLater(accepted.get(30, TimeUnit.SECONDS)), error, errored);
    }

    private static byte[] join(long session, int channels, int channel) {
        byte[] b = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH];
        MemorySegment m = MemorySegment.ofArray(b);
        Wire.writePreamble(m, Wire.VERSION);
        new FrameHeader(m.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, channels, session, channel, 0);
        return b;
    }

    private static String errorUntilClosed(Socket s) throws IOException {
        s.setSoTimeout(15_000);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        InputStream in = s.getInputStream();
        byte[] buf = new byte[8192];
        try {
            for (int n; (n = in.read(buf)) >= 0; ) {
                out.write(buf, 0, n);
            }
        } catch (SocketException e) {
            // a reset after the ERROR frame still ends the stream; the ERROR frame is what is checked
        }
        return TransportTck.errorText(out.toByteArray());
    }

    /** The URGENT_LANE flag on background channel 1 of a shared session, or on the background channel of a dedicated one. */
    @ParameterizedTest(name = "shared={0}")
    @CsvSource({"true, 2, only on the shared channel 0", "false, 1, URGENT_LANE flag, but the handshake negotiated no shared channel"})
    void urgentFlagOffTheSharedChannelIsRefused(boolean shared, int channels, String keyword) throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        RawSession r = rawSession(shared, channels, dst);
        r.second().getOutputStream().write(TransportTck.header(FrameType.ZERO_RUN, FrameHeader.FLAG_URGENT_LANE, 0, 0, 1, 0));
        assertTrue(r.errored().await(15, TimeUnit.SECONDS), "no error at the destination");
        assertEquals(Kind.PROTOCOL, r.error().get().kind(), r.error().get().toString());
        assertTrue(r.error().get().getMessage().contains(keyword), r.error().get().getMessage());
        String told = errorUntilClosed(r.first());
        assertTrue(told.contains(keyword), "the source is told on its first connection: " + told);
    }

    @Test
    void urgentLaneFramesStillFollowChannelZerosComplete() throws Exception {
        // After COMPLETE on channel 0 only urgent-lane frames may follow there (heartbeats, controls); a background frame may not.
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        RawSession r = rawSession(true, 1, dst);
        r.first().getOutputStream().write(TransportTck.header(FrameType.COMPLETE, 0, 0, 0, 0, 0));
        r.first().getOutputStream().write(TransportTck.header(FrameType.HEARTBEAT, FrameHeader.FLAG_URGENT_LANE, 0, 0, 0, 0));
        r.first().getOutputStream().write(TransportTck.header(FrameType.ZERO_RUN, 0, 0, 0, 1, 0));
        assertTrue(r.errored().await(15, TimeUnit.SECONDS), "no error at the destination");
        assertTrue(r.error().get().getMessage().contains("ZERO_RUN frame after COMPLETE"), r.error().get().getMessage());
    }

    @Test
    void joinForChannelZeroOfASharedSessionIsRefused() throws Exception {
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0", new TransportContext().layout(dst.layout())));
        InetSocketAddress at = new InetSocketAddress("127.0.0.1", io.pagewire.transport.spi.TransportUri.parse(l.uri()).port());
        long session = 0x0c4a_77e1L;
        Socket first = closeLater(new Socket());
        first.connect(at, 10_000);
        first.getOutputStream().write(TcpRawPeer.sharedHello(dst.layout().descriptors(), true, 256 * 1024, session, 2));
        Socket zero = closeLater(new Socket());
        zero.connect(at, 10_000);
        zero.getOutputStream().write(join(session, 2, 0));
        String answer = errorUntilClosed(zero);
        assertTrue(answer.contains("JOIN for channel 0 of 2 does not fit"), answer);
    }

    @Test
    void urgentChannelOptionIsCheckedAndListed() throws Exception {
        TckRam ram = closeLater(TckRam.of(4 * MIB));
        TransportException e = assertThrows(TransportException.class,
                () -> Transports.listen("tcp://127.0.0.1:0?urgent-channel=fast", new TransportContext().layout(ram.layout())));
        assertEquals(Kind.INVALID_URI, e.kind());
        assertTrue(e.getMessage().contains("urgent-channel=fast") && e.getMessage().contains("dedicated")
                && e.getMessage().contains("shared"), e.getMessage());
        assertTrue(new TcpTransportProvider().options().containsKey("urgent-channel"));
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?urgent-channel=dedicated", new TransportContext().layout(ram.layout())));
        assertTrue(l.uri().contains("urgent-channel=dedicated"), l.uri());
    }
}
