package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.RawPeer.RawStream;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The transport conformance test kit. Every transport runs this suite through a small subclass
 * that says which URIs to listen on (and, for hostile input, how to reach a listener raw):
 * <pre>{@code
 * class TcpTransportTest extends TransportTck {
 *     protected Stream<String> listenUris() { return Stream.of("tcp://127.0.0.1:0?channels=1", ...); }
 *     protected Optional<RawPeer> rawPeer() { return Optional.of(new TcpRawPeer()); }
 * }
 * }</pre>
 * Each case runs once per URI and is reported as its own row. Every case is bounded in time and
 * closes what it opened, also when it fails.
 *
 * <p>System properties: {@code pagewire.tck.bytes} (size of the large transfer, default 1 GiB).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 180, unit = TimeUnit.SECONDS)
public abstract class TransportTck {
    /** Bound on how long a failure may take to surface on the surviving side. */
    protected static final Duration FAILURE_BOUND = Duration.ofSeconds(15);
    private static final long MIB = 1 << 20;

    /** @return the URIs to listen on (port 0); each case runs once per URI */
    protected abstract Stream<String> listenUris();

    /** @return raw access for the hostile-input cases, or empty for transports without a byte stream */
    protected Optional<RawPeer> rawPeer() {
        return Optional.empty();
    }

    /**
     * @return false when a peer cannot run in another JVM (an in-process simulated fabric). The
     *         cases that kill or freeze a peer process then skip, naming this reason, and the
     *         transport must cover peer death with its own failure injection.
     */
    protected boolean peersCanRunInAnotherProcess() {
        return true;
    }

    private void requireChildProcesses() {
        assumeTrue(peersCanRunInAnotherProcess(), getClass().getSimpleName()
                + ": peers of this transport live in one process (simulated fabric); peer death is tested by its failure injection");
    }

    /**
     * @return false for a URI whose connections run the urgent lane over a background stream (no
     *         {@link Capability#SEPARATE_URGENT_PATH}, e.g. TCP's {@code urgent-channel=shared}, kept to
     *         measure what the priority lane buys). The handshake case checks that such connections do not
     *         claim the capability and all others do; the cases that need priority skip, naming this.
     */
    protected boolean urgentLaneHasOwnPath(String listenUri) {
        return true;
    }

    private void requireUrgentPriority(String listenUri) {
        assumeTrue(urgentLaneHasOwnPath(listenUri), listenUri + ": a shared channel has no priority: urgent frames queue behind"
                + " the background data on the same stream, so they cannot be served while the background lane is stalled");
    }

    /** @return the URI a source uses to reach this listener (default: the listener's own URI) */
    protected String connectUri(Listener listener) {
        return listener.uri();
    }

    private final Closer cleanup = new Closer();

    @AfterEach
    final void closeEverything() throws Exception {
        cleanup.closeAll();
    }

    protected <T extends AutoCloseable> T closeLater(T c) {
        return cleanup.add(c);
    }

    // ======================================================================= helpers

    /** A listener, a source connection and the accepted destination connection. */
    protected record Pair(Listener listener, Connection source, Connection destination) {
    }

    protected TransportContext context(RamLayout layout) {
        return new TransportContext().layout(layout);
    }

    protected Pair open(String listenUri, TckRam src, TckRam dst, MessageHandler srcHandler, MessageHandler dstHandler) throws Exception {
        return open(listenUri, src.layout(), dst.layout(), srcHandler, dstHandler);
    }

    protected Pair open(String listenUri, RamLayout src, RamLayout dst, MessageHandler srcHandler, MessageHandler dstHandler) throws Exception {
        Listener l = closeLater(Transports.listen(listenUri, context(dst)));
        String target = connectUri(l);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(
                () -> Transports.connect(target, context(src).handler(srcHandler)));
        Connection d = closeLater(l.accept(dstHandler, Duration.ofSeconds(30)));
        Connection s = closeLater(source.get(30, TimeUnit.SECONDS));
        return new Pair(l, s, d);
    }

    /** A pair over 4 MiB of RAM on each side (closed after the connections). */
    protected Pair openSmall(String listenUri, MessageHandler srcHandler, MessageHandler dstHandler) throws Exception {
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        return open(listenUri, src, dst, srcHandler, dstHandler);
    }

    /** Records errors and completion; extend for more. */
    protected static class Recorder implements MessageHandler {
        final AtomicReference<TransportException> error = new AtomicReference<>();
        final CountDownLatch errored = new CountDownLatch(1);
        final CountDownLatch completed = new CountDownLatch(1);
        final AtomicLong errorCount = new AtomicLong();
        final AtomicReference<Connection> opened = new AtomicReference<>();
        final AtomicLong closedCount = new AtomicLong();
        final CountDownLatch closed = new CountDownLatch(1);
        volatile TransportException closedWith;

        @Override
        public void onOpen(Connection c) {
            assertTrue(opened.compareAndSet(null, c), "onOpen called twice");
        }

        @Override
        public void onClosed(TransportException failure) {
            closedWith = failure;
            closedCount.incrementAndGet();
            closed.countDown();
        }

        /** Waits for the terminal event; checks it came once. @return what it carried */
        TransportException awaitClosed(Duration d) throws InterruptedException {
            assertTrue(closed.await(d.toMillis(), TimeUnit.MILLISECONDS), "no onClosed within " + d);
            assertEquals(1, closedCount.get(), "onClosed must come exactly once");
            return closedWith;
        }

        @Override
        public void onError(TransportException e) {
            errorCount.incrementAndGet();
            error.compareAndSet(null, e);
            errored.countDown();
        }

        @Override
        public void onComplete() {
            completed.countDown();
        }

        TransportException awaitError(Duration d) throws InterruptedException {
            assertTrue(errored.await(d.toMillis(), TimeUnit.MILLISECONDS), "no error reported within " + d);
            return error.get();
        }

        void assertNoError() {
            TransportException e = error.get();
            if (e != null) {
                throw new AssertionError("unexpected transport error: " + e, e);
            }
        }
    }

    /** Destination-side recorder that acknowledges completion. */
    protected static class AckingRecorder extends Recorder {
        volatile Connection connection;

        @Override
        public void onComplete() {
            Connection c = connection;
            if (c != null) {
                c.urgent().sendComplete();
            }
            super.onComplete();
        }
    }

    private static void await(CountDownLatch latch, Duration d, String what) throws InterruptedException {
        assertTrue(latch.await(d.toMillis(), TimeUnit.MILLISECONDS), what + " did not happen within " + d);
    }

    /** Completes a pair: source sends COMPLETE, destination acknowledges, both see it. */
    protected void complete(Pair p, AckingRecorder dst, Recorder src) throws InterruptedException {
        dst.connection = p.destination();
        p.source().background().sendComplete();
        await(dst.completed, Duration.ofSeconds(60), "destination onComplete");
        await(src.completed, Duration.ofSeconds(30), "source onComplete (acknowledgement)");
        dst.assertNoError();
        src.assertNoError();
    }

    // ======================================================================= handshake

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void handshakeConnectsBothRolesAndCompletes(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(16 * MIB));
            TckRam dst = closeLater(TckRam.of(16 * MIB));
            Recorder s = new Recorder();
            AckingRecorder d = new AckingRecorder();
            Pair p = open(listenUri, src, dst, s, d);
            assertEquals(io.pagewire.transport.spi.Role.SOURCE, p.source().role());
            assertEquals(io.pagewire.transport.spi.Role.DESTINATION, p.destination().role());
            assertEquals(src.layout().descriptors(), p.destination().layout().descriptors());
            boolean ownPath = urgentLaneHasOwnPath(listenUri);
            assertEquals(ownPath, p.source().capabilities().contains(Capability.SEPARATE_URGENT_PATH),
                    (ownPath ? "the urgent lane has its own path here: " : "a shared channel must not claim a separate urgent path: ")
                            + p.source().capabilities());
            assertEquals(ownPath, p.destination().capabilities().contains(Capability.SEPARATE_URGENT_PATH),
                    "destination: " + p.destination().capabilities());
            assertFalse(p.source().isClosed());
            complete(p, d, s);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void layoutMismatchIsRejectedAndListenerSurvives(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam dst = closeLater(TckRam.of(16 * MIB));
            TckRam bigger = closeLater(TckRam.of(32 * MIB));
            TckRam renamed = closeLater(TckRam.of(new String[]{"other.ram"}, new long[]{16 * MIB}));
            TckRam good = closeLater(TckRam.of(16 * MIB));
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            TransportException e = assertThrows(TransportException.class,
                    () -> Transports.connect(connectUri(l), context(bigger.layout())));
            assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("layout") && e.getMessage().contains("pc.ram")
                    && e.getMessage().contains(String.valueOf(32 * MIB)), e.getMessage());
            e = assertThrows(TransportException.class, () -> Transports.connect(connectUri(l), context(renamed.layout())));
            assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("other.ram") && e.getMessage().contains("pc.ram"), e.getMessage());
            // The listener still serves a matching source.
            CompletableFuture<Connection> ok = CompletableFuture.supplyAsync(() -> Transports.connect(connectUri(l), context(good.layout())));
            closeLater(l.accept(new Recorder(), Duration.ofSeconds(30)));
            closeLater(ok.get(30, TimeUnit.SECONDS));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void versionMismatchIsRejectedWithBothVersions(String listenUri) throws Exception {
        RawPeer raw = requireRawPeer();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam dst = closeLater(TckRam.of(16 * MIB));
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            try (RawStream s = raw.open(connectUri(l))) {
                byte[] hello = helloBytes(dst.layout(), 99, true);
                s.write(hello);
                String answer = errorText(s.readUntilClosed(FAILURE_BOUND));
                assertTrue(answer.contains("version " + Wire.VERSION) && answer.contains("99"), answer);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void garbageBeforeTheHandshakeIsRejected(String listenUri) throws Exception {
        RawPeer raw = requireRawPeer();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam dst = closeLater(TckRam.of(16 * MIB));
            TckRam good = closeLater(TckRam.of(16 * MIB));
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            try (RawStream s = raw.open(connectUri(l))) {
                s.write("GET / HTTP/1.1\r\nHost: example\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                String answer = errorText(s.readUntilClosed(FAILURE_BOUND));
                assertTrue(answer.contains("not a pagewire peer") && answer.contains("GET / HT"), answer);
            }
            CompletableFuture<Connection> ok = CompletableFuture.supplyAsync(() -> Transports.connect(connectUri(l), context(good.layout())));
            closeLater(l.accept(new Recorder(), Duration.ofSeconds(30)));
            closeLater(ok.get(30, TimeUnit.SECONDS));
        }
    }

    static Stream<Arguments> hostileHellos() {
        return Stream.of(
                Arguments.of("truncated region list", "truncated"),
                Arguments.of("region name longer than 255 bytes", "name length"),
                Arguments.of("zero background channels", "channel count"),
                Arguments.of("payload length over the HELLO limit", "exceeds"),
                Arguments.of("max payload not a power of two", "power of two"),
                // Only aeron: makes per-frame MACs; the others refuse a source asking for them (aeron: refuses it without authentication).
                Arguments.of("frame-mac asked for (HELLO flag 16)", "frame-mac"));
    }

    /** Cartesian product of the listen URIs and a list of cases. */
    protected Stream<Arguments> withUris(Stream<Arguments> cases) {
        List<Arguments> all = cases.toList();
        return listenUris().flatMap(u -> all.stream().map(a -> {
            Object[] x = new Object[a.get().length + 1];
            x[0] = u;
            System.arraycopy(a.get(), 0, x, 1, a.get().length);
            return Arguments.of(x);
        }));
    }

    Stream<Arguments> hostileHelloCases() {
        return withUris(hostileHellos());
    }

    @ParameterizedTest(name = "{0}: {1}")
    @MethodSource("hostileHelloCases")
    void hostileHelloIsRejected(String listenUri, String what, String keyword) throws Exception {
        RawPeer raw = requireRawPeer();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam dst = closeLater(TckRam.of(16 * MIB));
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            byte[] hello = helloBytes(dst.layout(), Wire.VERSION, true);
            int p = Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH;
            MemorySegment h = MemorySegment.ofArray(hello);
            switch (what) {
                case "truncated region list" -> {
                    h.set(Wire.U16, p + 14, (short) 3); // three regions announced, one present
                    hello = rehead(hello, FrameType.HELLO);
                }
                case "region name longer than 255 bytes" -> {
                    h.set(Wire.U16, p + 28, (short) 300);
                    hello = rehead(hello, FrameType.HELLO);
                }
                case "zero background channels" -> {
                    h.set(Wire.U16, p + 12, (short) 0);
                    hello = rehead(hello, FrameType.HELLO);
                }
                case "max payload not a power of two" -> {
                    h.set(Wire.U32, p + 16, 3 * 4096); // within 512..16 MiB and above the page size: only the one rule refuses it
                    hello = rehead(hello, FrameType.HELLO);
                }
                case "frame-mac asked for (HELLO flag 16)" -> {
                    h.set(Wire.U32, p + 8, Hello.FLAG_DATA_DIGEST | Hello.FLAG_FRAME_MAC);
                    hello = rehead(hello, FrameType.HELLO);
                }
                case "payload length over the HELLO limit" -> {
                    MemorySegment hdr = MemorySegment.ofArray(hello).asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH);
                    new FrameHeader(hdr).encode(FrameType.HELLO, 0, 0, 0, 0, Wire.MAX_HELLO_BYTES + 1);
                    hello = Arrays.copyOf(hello, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH);
                }
                default -> throw new IllegalArgumentException(what);
            }
            try (RawStream s = raw.open(connectUri(l))) {
                s.write(hello);
                String answer = errorText(s.readUntilClosed(FAILURE_BOUND));
                assertTrue(answer.toLowerCase().contains(keyword), "answer should name '" + keyword + "': " + answer);
            }
        }
    }

    // ======================================================================= data

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void largeMixedTransferArrivesByteExactAndInOrder(String listenUri) throws Exception {
        long bytes = Long.getLong("pagewire.tck.bytes", 1L << 30);
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(bytes));
            TckRam dst = closeLater(TckRam.of(bytes));
            long seed = 42;
            src.fillPattern(seed, 30, 1);
            dst.fill((byte) 0xA5);
            long pages = src.pages(0);
            long half = pages / 2;
            AtomicLongArray seen = new AtomicLongArray((int) ((pages + 63) / 64));
            AtomicLong delivered = new AtomicLong();
            AtomicReference<String> violation = new AtomicReference<>();
            AtomicLong deliveredAtRoundEnd = new AtomicLong(-1);
            MemorySegment dstMem = dst.memory(0);
            AckingRecorder d = new AckingRecorder() {
                void mark(long first, long count) {
                    for (long p = first; p < first + count; p++) {
                        long bit = 1L << (p & 63);
                        long old = seen.getAndUpdate((int) (p >>> 6), w -> w | bit);
                        if ((old & bit) != 0) {
                            violation.compareAndSet(null, "page " + p + " delivered twice");
                        }
                    }
                    delivered.addAndGet(count);
                }

                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    mark(first, count);
                }

                @Override
                public void onZeroRun(LaneKind lane, int region, long first, long count) {
                    dstMem.asSlice(first * 4096, count * 4096).fill((byte) 0); // the transport writes nothing for zero runs
                    mark(first, count);
                }

                @Override
                public void onRoundEnd(long round) {
                    deliveredAtRoundEnd.set(delivered.get());
                }
            };
            Recorder s = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            long t0 = System.nanoTime();
            sendPattern(p.source(), seed, 30, 0, half);
            p.source().background().sendRoundEnd(1);
            sendPattern(p.source(), seed, 30, half, pages);
            complete(p, d, s);
            double seconds = (System.nanoTime() - t0) / 1e9;
            report(listenUri, String.format("large transfer: %d MiB in %.2f s = %.2f GB/s (pending high water %d of %d bytes)",
                    bytes >> 20, seconds, bytes / seconds / 1e9, p.source().stats().backgroundPendingHighWaterBytes(),
                    p.source().stats().backgroundPendingLimitBytes()));
            assertNull(violation.get(), violation.get());
            assertEquals(half, deliveredAtRoundEnd.get(), "round end 1 must come after exactly the pages sent before it");
            assertEquals(pages, delivered.get());
            long mismatch = src.memory(0).mismatch(dst.memory(0));
            assertEquals(-1, mismatch, "first differing byte at offset " + mismatch + " (page " + (mismatch / 4096) + ")");
            assertEquals(src.crc(0), dst.crc(0));
            assertTrue(p.source().stats().backgroundPendingHighWaterBytes() <= p.source().stats().backgroundPendingLimitBytes());
            assertEquals(pages - countZero(seed, 30, pages), p.destination().stats().pagesReceived());
        }
    }

    /**
     * Every background channel filled by its own thread at once (QEMU multifd's shape), each with
     * its own back pressure; a round end on the background lane then follows all of them. A
     * transport with one background producer offers one channel, and the test is the plain case.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void backgroundChannelsAreFilledInParallel(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(64 * MIB));
            TckRam dst = closeLater(TckRam.of(64 * MIB));
            long seed = 7;
            src.fillPattern(seed, 30, 1);
            dst.fill((byte) 0xA5);
            long pages = src.pages(0);
            MemorySegment dstMem = dst.memory(0);
            AtomicLong delivered = new AtomicLong();
            AtomicLong deliveredAtRoundEnd = new AtomicLong(-1);
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    delivered.addAndGet(count);
                }

                @Override
                public void onZeroRun(LaneKind lane, int region, long first, long count) {
                    dstMem.asSlice(first * 4096, count * 4096).fill((byte) 0); // the transport writes nothing for zero runs
                    delivered.addAndGet(count);
                }

                @Override
                public void onRoundEnd(long round) {
                    deliveredAtRoundEnd.set(delivered.get());
                }
            };
            Recorder s = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            Connection c = p.source();
            int channels = c.backgroundChannels();
            assertTrue(channels >= 1, "channels: " + channels);
            assertThrows(IndexOutOfBoundsException.class, () -> c.backgroundChannel(channels));
            java.util.concurrent.ExecutorService producers = java.util.concurrent.Executors.newFixedThreadPool(channels);
            try {
                List<java.util.concurrent.Future<?>> done = new ArrayList<>();
                for (int ch = 0; ch < channels; ch++) {
                    io.pagewire.transport.spi.Lane lane = c.backgroundChannel(ch);
                    int mine = ch;
                    // Slices of 64 pages, taking turns: every channel carries pages from all over the region.
                    done.add(producers.submit(() -> {
                        for (long slice = mine; slice * 64 < pages; slice += channels) {
                            long end = Math.min(pages, slice * 64 + 64);
                            for (long i = slice * 64; i < end; ) {
                                boolean zero = TckRam.isZero(seed, i, 30);
                                long j = i + 1;
                                while (j < end && TckRam.isZero(seed, j, 30) == zero) {
                                    j++;
                                }
                                if (zero) {
                                    lane.sendZeroRun(0, i, j - i);
                                } else {
                                    for (long k = i; k < j; ) {
                                        long n = lane.offerPages(0, k, j - k);
                                        if (n == io.pagewire.transport.spi.Lane.BACK_PRESSURED) {
                                            lane.awaitRoom();
                                        } else {
                                            k += n;
                                        }
                                    }
                                }
                                i = j;
                            }
                        }
                        return null;
                    }));
                }
                for (java.util.concurrent.Future<?> f : done) {
                    f.get(120, TimeUnit.SECONDS);
                }
            } finally {
                producers.shutdownNow();
            }
            if (c.backgroundChannel(channels - 1) != c.background()) {
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> c.backgroundChannel(channels - 1).sendRoundEnd(1));
                assertTrue(e.getMessage().contains("background lane"), e.getMessage());
            }
            c.background().sendRoundEnd(1);
            complete(p, d, s);
            assertEquals(pages, deliveredAtRoundEnd.get(), "the round end follows every page of every channel");
            long mismatch = src.memory(0).mismatch(dst.memory(0));
            assertEquals(-1, mismatch, "first differing byte at offset " + mismatch + " (page " + (mismatch / 4096) + ")");
            assertEquals(pages - countZero(seed, 30, pages), p.destination().stats().pagesReceived());
            assertTrue(c.stats().backgroundPendingHighWaterBytes() <= c.stats().backgroundPendingLimitBytes(),
                    c.stats().backgroundPendingHighWaterBytes() + " > " + c.stats().backgroundPendingLimitBytes());
        }
    }

    private static long countZero(long seed, int zeroPercent, long pages) {
        long n = 0;
        for (long i = 0; i < pages; i++) {
            if (TckRam.isZero(seed, i, zeroPercent)) {
                n++;
            }
        }
        return n;
    }

    /** Sends pages [from, to) as runs: data runs for non-zero pages, zero runs for zero pages. */
    private static void sendPattern(Connection c, long seed, int zeroPercent, long from, long to) {
        long i = from;
        while (i < to) {
            boolean zero = TckRam.isZero(seed, i, zeroPercent);
            long j = i + 1;
            while (j < to && TckRam.isZero(seed, j, zeroPercent) == zero) {
                j++;
            }
            if (zero) {
                c.background().sendZeroRun(0, i, j - i);
            } else {
                c.background().sendPages(0, i, j - i);
            }
            i = j;
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void roundEndIsABarrierAcrossStreams(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(32 * MIB));
            TckRam dst = closeLater(TckRam.of(32 * MIB));
            long pages = src.pages(0);
            MemorySegment sm = src.memory(0);
            for (long pg = 0; pg < pages; pg++) {
                TckRam.writePage(sm, pg * 4096, 4096, 5, pg, 1);
            }
            AtomicBoolean roundOneEnded = new AtomicBoolean();
            AtomicReference<String> violation = new AtomicReference<>();
            MemorySegment dm = dst.memory(0);
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    for (long pg = first; pg < first + count; pg++) {
                        long v = TckRam.version(dm, pg * 4096);
                        if ((v == 2) != roundOneEnded.get()) {
                            violation.compareAndSet(null, "page " + pg + " of round " + v + " delivered "
                                    + (roundOneEnded.get() ? "after" : "before") + " round end 1");
                        }
                    }
                }

                @Override
                public void onRoundEnd(long round) {
                    if (round == 1) {
                        roundOneEnded.set(true);
                    }
                }
            };
            Recorder s = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            p.source().background().sendPages(0, 0, pages);
            p.source().background().sendRoundEnd(1);
            // After flush() the transport has read every page offered: changing them now must not
            // change what round 1 delivers.
            p.source().background().flush();
            for (long pg = 0; pg < pages; pg++) {
                TckRam.writePage(sm, pg * 4096, 4096, 5, pg, 2);
            }
            p.source().background().sendPages(0, 0, pages);
            p.source().background().sendRoundEnd(2);
            complete(p, d, s);
            assertNull(violation.get(), violation.get());
            assertEquals(-1, sm.mismatch(dm));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void severalRegionsAndSkipRuns(String listenUri) throws Exception {
        String[] names = {"pc.ram", "vga.vram", "pc.rom"};
        long[] sizes = {8 * MIB, 2 * MIB, 256 * 1024};
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(names, sizes));
            TckRam dst = closeLater(TckRam.of(names, sizes));
            src.fillPattern(9, 0, 1);
            dst.fill((byte) 0x5A);
            AtomicLong skipped = new AtomicLong();
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onSkipRun(LaneKind lane, int region, long first, long count) {
                    skipped.addAndGet(count);
                }
            };
            Recorder s = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            // Region 0: first half skipped (ballooned), second half sent. Regions 1, 2: sent whole.
            long half = src.pages(0) / 2;
            p.source().background().sendSkipRun(0, 0, half);
            p.source().background().sendPages(0, half, src.pages(0) - half);
            p.source().background().sendPages(1, 0, src.pages(1));
            p.source().background().sendPages(2, 0, src.pages(2));
            complete(p, d, s);
            assertEquals(half, skipped.get());
            assertEquals(-1, src.memory(1).mismatch(dst.memory(1)));
            assertEquals(-1, src.memory(2).mismatch(dst.memory(2)));
            assertEquals(-1, src.memory(0).asSlice(half * 4096).mismatch(dst.memory(0).asSlice(half * 4096)));
            MemorySegment untouched = dst.memory(0).asSlice(0, half * 4096);
            assertEquals(-1, untouched.mismatch(Arena.ofAuto().allocate(untouched.byteSize()).fill((byte) 0x5A)),
                    "skipped pages must not be written");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void scatteredSinglePagesArriveByteExactlyOnce(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(32 * MIB));
            TckRam dst = closeLater(TckRam.of(32 * MIB));
            src.fillPattern(21, 0, 1);
            long pages = src.pages(0);
            AtomicLongArray seen = new AtomicLongArray((int) ((pages + 63) / 64));
            AtomicReference<String> violation = new AtomicReference<>();
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    for (long p = first; p < first + count; p++) {
                        long bit = 1L << (p & 63);
                        if ((seen.getAndUpdate((int) (p >>> 6), w -> w | bit) & bit) != 0) {
                            violation.compareAndSet(null, "page " + p + " delivered twice");
                        }
                    }
                }
            };
            Recorder s = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            // Even pages one at a time going up, odd pages one at a time going down: a dirty round's shape.
            for (long pg = 0; pg < pages; pg += 2) {
                p.source().background().sendPages(0, pg, 1);
            }
            for (long pg = pages - 1; pg > 0; pg -= 2) {
                p.source().background().sendPages(0, pg, 1);
            }
            complete(p, d, s);
            assertNull(violation.get(), violation.get());
            for (int w = 0; w < seen.length(); w++) {
                assertEquals(-1L, seen.get(w), "pages missing in word " + w);
            }
            assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
            assertEquals(pages, p.destination().stats().pagesReceived());
        }
    }

    // ======================================================================= urgent lane

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void urgentLaneIsServedWhileBackgroundIsStalled(String listenUri) throws Exception {
        requireUrgentPriority(listenUri);
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(64 * MIB));
            TckRam dst = closeLater(TckRam.of(64 * MIB));
            src.fillPattern(3, 0, 1);
            long pages = src.pages(0);
            CountDownLatch release = new CountDownLatch(1);
            AtomicBoolean stalled = new AtomicBoolean();
            AtomicLong answeredPage = new AtomicLong(-1);
            java.util.concurrent.Semaphore answered = new java.util.concurrent.Semaphore(0);
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    if (lane == LaneKind.URGENT) {
                        answeredPage.set(first);
                        answered.release();
                        return;
                    }
                    stalled.set(true);
                    try {
                        // A destination that stops reading its background lane.
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            };
            AtomicReference<Connection> srcConn = new AtomicReference<>();
            Recorder s = new Recorder() {
                @Override
                public void onPageRequest(int region, long first, int count) {
                    srcConn.get().urgent().sendPages(region, first, count);
                }
            };
            Pair p = open(listenUri, src, dst, s, d);
            srcConn.set(p.source());
            long[] idle = roundTrips(p, answered, answeredPage, 200, pages);
            CompletableFuture<Void> push = CompletableFuture.runAsync(() -> p.source().background().sendPages(0, 0, pages));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!(stalled.get() && p.source().stats().backPressureEvents() > 0)) {
                assertTrue(System.nanoTime() < deadline, "the background lane never became back-pressured: " + p.source().stats());
                assertFalse(push.isDone() && !stalled.get(), "push finished without the destination stalling");
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5)); // polling a condition with a deadline
            }
            long[] busy = roundTrips(p, answered, answeredPage, 200, pages);
            assertFalse(push.isDone(), "the background lane should still be stalled while the urgent lane works");
            release.countDown();
            push.get(60, TimeUnit.SECONDS);
            complete(p, d, s);
            report(listenUri, "urgent round trip, background idle:    " + percentiles(idle));
            report(listenUri, "urgent round trip, background stalled: " + percentiles(busy));
        }
    }

    /** Sends {@code n} page requests one after another, each answered on the urgent lane; returns RTTs in ns. */
    private static long[] roundTrips(Pair p, java.util.concurrent.Semaphore answered, AtomicLong answeredPage, int n, long pages)
            throws InterruptedException {
        long[] rtt = new long[n];
        for (int i = 0; i < n; i++) {
            long page = (i * 7919L) % pages;
            long t0 = System.nanoTime();
            p.destination().urgent().sendPageRequest(0, page, 1);
            assertTrue(answered.tryAcquire(10, TimeUnit.SECONDS), "page request " + i + " (page " + page + ") not answered within 10 s");
            rtt[i] = System.nanoTime() - t0;
            assertEquals(page, answeredPage.get());
        }
        return rtt;
    }

    protected static String percentiles(long[] ns) {
        long[] s = ns.clone();
        Arrays.sort(s);
        return String.format("n=%d p50=%.1f us p99=%.1f us max=%.1f us", s.length, s[s.length / 2] / 1e3,
                s[(int) Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)] / 1e3, s[s.length - 1] / 1e3);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void controlMessagesFlowBothWaysOnBothLanes(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(4 * MIB));
            TckRam dst = closeLater(TckRam.of(4 * MIB));
            List<String> atDst = java.util.Collections.synchronizedList(new ArrayList<>());
            List<String> atSrc = java.util.Collections.synchronizedList(new ArrayList<>());
            CountDownLatch dstGot = new CountDownLatch(2);
            CountDownLatch srcGot = new CountDownLatch(1);
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onControl(LaneKind lane, MemorySegment payload) {
                    atDst.add(lane + ":" + new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
                    dstGot.countDown();
                }
            };
            Recorder s = new Recorder() {
                @Override
                public void onControl(LaneKind lane, MemorySegment payload) {
                    atSrc.add(lane + ":" + new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
                    srcGot.countDown();
                }
            };
            Pair p = open(listenUri, src, dst, s, d);
            p.source().urgent().sendControl(MemorySegment.ofArray("switch to postcopy".getBytes(StandardCharsets.UTF_8)));
            p.source().background().sendControl(MemorySegment.ofArray(new byte[]{'b', 'g'}));
            p.destination().urgent().sendControl(MemorySegment.ofArray("ready".getBytes(StandardCharsets.UTF_8)));
            await(dstGot, Duration.ofSeconds(10), "control at the destination");
            await(srcGot, Duration.ofSeconds(10), "control at the source");
            assertTrue(atDst.contains("URGENT:switch to postcopy") && atDst.contains("BACKGROUND:bg"), atDst.toString());
            assertEquals(List.of("URGENT:ready"), atSrc);
            byte[] big = new byte[io.pagewire.transport.spi.Lane.MAX_CONTROL_BYTES + 1];
            assertThrows(IllegalArgumentException.class, () -> p.source().urgent().sendControl(MemorySegment.ofArray(big)));
            complete(p, d, s);
        }
    }

    // ======================================================================= back pressure

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void slowReceiverSlowsTheSenderWithinAMemoryBound(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(64 * MIB));
            TckRam dst = closeLater(TckRam.of(64 * MIB));
            src.fillPattern(11, 0, 1);
            long pages = src.pages(0);
            AckingRecorder d = new AckingRecorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(500)); // a slow destination, per batch
                }
            };
            Recorder s = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            long me = Thread.currentThread().threadId();
            long before = threads.getThreadAllocatedBytes(me);
            long offered = 0;
            long refused = 0;
            for (int round = 0; round < 2; round++) {
                long next = 0;
                while (next < pages) {
                    long n = p.source().background().offerPages(0, next, pages - next);
                    if (n == io.pagewire.transport.spi.Lane.BACK_PRESSURED) {
                        refused++;
                        LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(200));
                        continue;
                    }
                    assertTrue(n > 0 && n <= pages - next, "offer took " + n);
                    next += n;
                    offered += n;
                }
                p.source().background().sendRoundEnd(round); // the same pages again: a new round (a page at most once per round)
            }
            long allocated = threads.getThreadAllocatedBytes(me) - before;
            complete(p, d, s);
            long limit = p.source().stats().backgroundPendingLimitBytes();
            long high = p.source().stats().backgroundPendingHighWaterBytes();
            report(listenUri, "slow receiver: offered " + (offered * 4096 >> 20) + " MiB, refused " + refused + " offers, pending high water "
                    + high + " of limit " + limit + ", sender thread allocated " + allocated + " bytes");
            assertTrue(refused > 0, "a slow receiver must back-pressure the sender");
            assertTrue(limit > 0 && high <= limit, "pending " + high + " over its bound " + limit);
            assertTrue(limit <= 256 * MIB, "the stated bound " + limit + " should be modest");
            // 128 MiB offered: the sender path must not allocate per page (a copy would be 128 MiB).
            assertTrue(allocated < 16 * MIB, "sender thread allocated " + allocated + " bytes for " + (offered * 4096) + " bytes offered");
            assertEquals(2 * pages, p.destination().stats().pagesReceived());
        }
    }

    // ======================================================================= failures

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void sourceKilledMidTransferFailsTheDestination(String listenUri) throws Exception {
        requireChildProcesses();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam dst = closeLater(TckRam.of(32 * MIB));
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            Recorder d = new Recorder();
            CountDownLatch someData = new CountDownLatch(1);
            Recorder dh = new Recorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    someData.countDown();
                }

                @Override
                public void onError(TransportException e) {
                    d.onError(e);
                }

                @Override
                public void onComplete() {
                    d.onComplete();
                }
            };
            ChildPeer peer = closeLater(new ChildPeer("source", connectUri(l), 32 * MIB));
            Process child = peer.process;
            Connection c = closeLater(l.accept(dh, Duration.ofSeconds(30)));
            peer.awaitLine("CONNECTED", Duration.ofSeconds(30));
            await(someData, Duration.ofSeconds(30), "pages from the child source");
            child.destroyForcibly(); // SIGKILL: no goodbye
            long t0 = System.nanoTime();
            TransportException e = d.awaitError(FAILURE_BOUND);
            report(listenUri, "source killed: destination error after " + (System.nanoTime() - t0) / 1_000_000 + " ms: " + e);
            assertTrue(e.kind() == Kind.CONNECTION_LOST || e.kind() == Kind.TIMEOUT, e.toString());
            assertEquals(1, d.completed.getCount(), "a killed source must never look complete");
            assertTrue(c.isClosed());
            assertThrows(TransportException.class, () -> c.urgent().sendPageRequest(0, 0, 1));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void destinationKilledMidTransferFailsTheSource(String listenUri) throws Exception {
        requireChildProcesses();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(32 * MIB));
            src.fillPattern(1, 10, 1);
            ChildPeer child = closeLater(new ChildPeer("dest", listenUri, 32 * MIB));
            Recorder s = new Recorder();
            Connection c = closeLater(Transports.connect(child.listeningUri, context(src.layout()).handler(s)));
            CompletableFuture<Void> push = CompletableFuture.runAsync(() -> {
                for (long round = 1; ; round++) {
                    c.background().sendPages(0, 0, src.pages(0));
                    c.background().sendRoundEnd(round);
                }
            });
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (c.stats().pagesSent() < 2 * src.pages(0)) {
                assertTrue(System.nanoTime() < deadline, "no progress: " + c.stats());
                assertFalse(push.isDone(), "push ended early");
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
            }
            child.process.destroyForcibly();
            long t0 = System.nanoTime();
            TransportException e = s.awaitError(FAILURE_BOUND);
            report(listenUri, "destination killed: source error after " + (System.nanoTime() - t0) / 1_000_000 + " ms: " + e);
            assertTrue(e.kind() == Kind.CONNECTION_LOST || e.kind() == Kind.TIMEOUT, e.toString());
            ExecutionException ex = assertThrows(ExecutionException.class, () -> push.get(FAILURE_BOUND.toMillis(), TimeUnit.MILLISECONDS));
            assertTrue(ex.getCause() instanceof TransportException, ex.getCause().toString());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void frozenPeerIsDetectedByThePeerTimeout(String listenUri) throws Exception {
        requireChildProcesses();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(8 * MIB));
            ChildPeer child = closeLater(new ChildPeer("dest", listenUri, 8 * MIB));
            Recorder s = new Recorder();
            TransportContext ctx = context(src.layout()).handler(s).peerTimeoutNs(TimeUnit.SECONDS.toNanos(2))
                    .heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(200));
            Connection c = closeLater(Transports.connect(child.listeningUri, ctx));
            child.awaitLine("ACCEPTED", Duration.ofSeconds(30));
            Process stop = new ProcessBuilder("kill", "-STOP", Long.toString(child.process.pid())).inheritIO().start();
            assertEquals(0, stop.waitFor(), "kill -STOP failed");
            long t0 = System.nanoTime();
            TransportException e = s.awaitError(Duration.ofSeconds(12));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            report(listenUri, "frozen destination: source error after " + ms + " ms (peer timeout 2000 ms): " + e);
            assertEquals(Kind.TIMEOUT, e.kind(), e.toString());
            assertTrue(c.isClosed());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void abortTellsThePeerWhy(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(4 * MIB));
            TckRam dst = closeLater(TckRam.of(4 * MIB));
            Recorder s = new Recorder();
            Recorder d = new Recorder();
            Pair p = open(listenUri, src, dst, s, d);
            p.destination().abort("verification failed: page 7 differs");
            TransportException e = s.awaitError(FAILURE_BOUND);
            assertEquals(Kind.PEER_ERROR, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("page 7 differs"), e.getMessage());
            assertThrows(TransportException.class, () -> p.source().background().sendPages(0, 0, 1));
            assertTrue(p.destination().isClosed());
            assertNull(d.error.get(), "a local abort is not reported to the local handler");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void stateAfterACleanEndIsClosedWithoutFailureOnBothSides(String listenUri) throws Exception {
        {
            Recorder s = new Recorder();
            AckingRecorder d = new AckingRecorder();
            Pair p = openSmall(listenUri, s, d);
            assertSame(p.source(), s.opened.get(), "the source's handler is given its connection before connect returns");
            assertSame(p.destination(), d.opened.get(), "the destination's handler is given its connection before accept returns");
            assertNull(p.source().failure());
            p.source().background().sendPages(0, 0, p.source().layout().region(0).pageCount());
            complete(p, d, s);
            p.source().close();
            assertTrue(p.source().isClosed());
            assertNull(p.source().failure(), "a clean close after completion is no failure");
            assertNull(s.awaitClosed(FAILURE_BOUND), "the source ended cleanly");
            // The destination sees the source's orderly end: over, cleanly, without being closed here.
            assertNull(d.awaitClosed(FAILURE_BOUND), "the destination's connection ended cleanly: " + d.closedWith);
            assertTrue(p.destination().isClosed());
            assertNull(p.destination().failure());
            p.destination().close();
            assertNull(p.destination().failure(), "closing after the peer's clean end is no failure");
            assertEquals(Kind.CLOSED, assertThrows(TransportException.class, () -> p.destination().urgent().sendControl(
                    MemorySegment.ofArray(new byte[1]))).kind());
            assertNull(s.error.get());
            assertNull(d.error.get());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void stateAfterAPeerFailureAndAfterAnAbortIsTheSameOnEveryTransport(String listenUri) throws Exception {
        {
            Recorder s = new Recorder();
            Recorder d = new Recorder();
            Pair p = openSmall(listenUri, s, d);
            p.source().abort("the source gave up: test");
            // The aborting side: closed, failed with CLOSED, its handler told only by the terminal event.
            assertTrue(p.source().isClosed());
            assertEquals(Kind.CLOSED, p.source().failure().kind(), String.valueOf(p.source().failure()));
            assertEquals(Kind.CLOSED, s.awaitClosed(FAILURE_BOUND).kind());
            assertNull(s.error.get(), "a local abort is not reported to the local handler's onError");
            // The peer: failed with the reason, told once, then the terminal event with the same failure.
            TransportException e = d.awaitError(FAILURE_BOUND);
            assertEquals(Kind.PEER_ERROR, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("the source gave up: test"), e.getMessage());
            assertSame(e, d.awaitClosed(FAILURE_BOUND), "onClosed carries the failure onError reported");
            assertTrue(p.destination().isClosed());
            assertSame(e, p.destination().failure());
            assertEquals(1, d.errorCount.get(), "onError exactly once");
            p.destination().close();
            assertSame(e, p.destination().failure(), "a later close does not replace the failure");
            assertEquals(1, d.closedCount.get());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void closeBeforeCompletionIsAFailureOfKindClosed(String listenUri) throws Exception {
        {
            Recorder s = new Recorder();
            Recorder d = new Recorder();
            Pair p = openSmall(listenUri, s, d);
            p.destination().close();
            assertTrue(p.destination().isClosed());
            assertEquals(Kind.CLOSED, p.destination().failure().kind());
            assertNull(d.error.get(), "a local close is not reported to the local handler's onError");
            TransportException e = s.awaitError(FAILURE_BOUND);
            assertTrue(e.kind() == Kind.PEER_ERROR || e.kind() == Kind.CONNECTION_LOST, e.toString());
            assertSame(e, s.awaitClosed(FAILURE_BOUND));
            assertTrue(p.source().isClosed());
            assertSame(e, p.source().failure());
        }
    }

    /**
     * The acknowledgement race (TCP df09c31): the source closes as soon as it reads the destination's
     * completion acknowledgement, possibly before the destination's acknowledging thread has returned;
     * the destination must see an orderly end, never a lost connection, every time.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void sourceClosingTheMomentItReadsTheAcknowledgementIsACleanEnd(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(MIB));
            TckRam dst = closeLater(TckRam.of(MIB));
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            for (int i = 0; i < 10; i++) {
                Recorder s = new Recorder() {
                    @Override
                    public void onComplete() {
                        opened.get().close(); // on the transport's own thread, the moment the acknowledgement is read
                        super.onComplete();
                    }
                };
                Recorder d = new Recorder() {
                    @Override
                    public void onComplete() {
                        opened.get().urgent().sendComplete(); // on the destination's own (background) thread
                        super.onComplete();
                    }
                };
                String target = connectUri(l);
                CompletableFuture<Connection> source = CompletableFuture.supplyAsync(
                        () -> Transports.connect(target, context(src.layout()).handler(s)));
                Connection dc = closeLater(l.accept(d, Duration.ofSeconds(30)));
                Connection sc = closeLater(source.get(30, TimeUnit.SECONDS));
                sc.background().sendPages(0, 0, src.pages(0));
                sc.background().sendComplete();
                assertNull(s.awaitClosed(FAILURE_BOUND), "round " + i + ": the source closed cleanly");
                assertNull(d.awaitClosed(FAILURE_BOUND), "round " + i + ": the destination saw an orderly end, not: " + d.closedWith);
                assertNull(d.error.get(), "round " + i + ": no error at the destination");
                assertNull(dc.failure(), "round " + i);
                assertNull(sc.failure(), "round " + i);
                dc.close();
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void closeIsIdempotentAndReleasesEveryThread(String listenUri) throws Exception {
        int baseline = liveThreads();
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(4 * MIB));
            TckRam dst = closeLater(TckRam.of(4 * MIB));
            Recorder s = new Recorder();
            AckingRecorder d = new AckingRecorder();
            Pair p = open(listenUri, src, dst, s, d);
            p.source().background().sendPages(0, 0, src.pages(0));
            complete(p, d, s);
            p.source().close();
            p.source().close();
            p.destination().close();
            p.destination().close();
            p.listener().close();
            p.listener().close();
            assertTrue(p.source().isClosed() && p.destination().isClosed());
            TransportException e = assertThrows(TransportException.class, () -> p.source().background().sendPages(0, 0, 1));
            assertEquals(Kind.CLOSED, e.kind());
            assertNull(s.error.get(), "a clean close after completion is not an error");
            assertNull(d.error.get(), "a clean close after completion is not an error");
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (liveThreads() > baseline) {
            if (System.nanoTime() > deadline) {
                fail("threads left after close: " + (liveThreads() - baseline) + " more than before: " + threadNames());
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
        }
    }

    private static int liveThreads() {
        return (int) Thread.getAllStackTraces().keySet().stream().filter(t -> t.isAlive() && !isInfrastructure(t)).count();
    }

    private static boolean isInfrastructure(Thread t) {
        // Common-pool and JUnit helper threads come and go independently of the transport.
        String n = t.getName();
        return n.startsWith("ForkJoinPool") || n.startsWith("junit") || n.startsWith("process reaper") || n.startsWith("Attach");
    }

    private static String threadNames() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.isAlive() && !isInfrastructure(t)).map(Thread::getName).sorted().toList().toString();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void misuseFailsLocallyWithClearErrors(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam src = closeLater(TckRam.of(4 * MIB));
            TckRam dst = closeLater(TckRam.of(4 * MIB));
            Recorder s = new Recorder();
            AckingRecorder d = new AckingRecorder();
            Pair p = open(listenUri, src, dst, s, d);
            long pages = src.pages(0);
            assertThrows(IndexOutOfBoundsException.class, () -> p.source().background().offerPages(0, pages, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> p.source().background().offerPages(0, pages - 1, 2));
            assertThrows(IndexOutOfBoundsException.class, () -> p.source().background().offerPages(3, 0, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> p.source().background().sendZeroRun(0, -1, 1));
            assertThrows(IllegalStateException.class, () -> p.destination().background().sendPages(0, 0, 1));
            assertThrows(IllegalStateException.class, () -> p.source().urgent().sendPageRequest(0, 0, 1));
            assertThrows(IllegalStateException.class, () -> p.destination().urgent().sendPages(0, 0, 1));
            complete(p, d, s);
            assertThrows(IllegalStateException.class, () -> p.source().background().sendPages(0, 0, 1),
                    "nothing may be sent after COMPLETE");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("listenUris")
    void unknownOptionsAndSchemesAreRejected(String listenUri) throws Exception {
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam ram = closeLater(TckRam.of(4 * MIB));
            String bad = listenUri + (listenUri.contains("?") ? "&" : "?") + "no-such-option=1";
            TransportException e = assertThrows(TransportException.class, () -> Transports.listen(bad, context(ram.layout())));
            assertEquals(Kind.INVALID_URI, e.kind());
            assertTrue(e.getMessage().contains("no-such-option") && e.getMessage().contains("known options"), e.getMessage());
            String scheme = listenUri.substring(0, listenUri.indexOf(':'));
            e = assertThrows(TransportException.class, () -> Transports.connect("nosuchscheme://h:1", context(ram.layout())));
            assertTrue(e.getMessage().contains(scheme), "the error should list the known schemes: " + e.getMessage());
        }
    }

    // ======================================================================= hostile input

    /** What a hostile source sends after a correct handshake and one legitimate PAGES frame (pages 0..3). */
    protected enum Hostile {
        BAD_PAYLOAD_LENGTH("payload length"),
        REGION_OUT_OF_RANGE("region id 7"),
        PAGES_PAST_THE_REGION_END("outside region"),
        PAGE_INDEX_OVERFLOW("outside region"),
        NEGATIVE_COUNT("outside region"),
        HUGE_PAGE_COUNT("page count"),
        BAD_HEADER_CRC("crc32c"),
        BAD_DATA_DIGEST("data digest"),
        UNKNOWN_FRAME_TYPE("unknown frame type"),
        UNKNOWN_FLAGS("unknown flags"),
        HANDSHAKE_FRAME_AGAIN("handshake frame"),
        PAGE_REQUEST_TO_DESTINATION("may only be sent to the source"),
        PAGE_LIST_DUPLICATE_INDEX("strictly ascending"),
        PAGE_LIST_INDEX_OUT_OF_RANGE("outside region"),
        PAGE_LIST_BAD_LENGTH("payload length"),
        TRUNCATED_FRAME("");

        final String keyword;

        Hostile(String keyword) {
            this.keyword = keyword;
        }
    }

    Stream<Arguments> hostileCases() {
        return withUris(Arrays.stream(Hostile.values()).map(Arguments::of));
    }

    @ParameterizedTest(name = "{0}: {1}")
    @MethodSource("hostileCases")
    void hostileFramesAreRejectedAndWriteNothingOutsideLegitimatePages(String listenUri, Hostile hostile) throws Exception {
        RawPeer raw = requireRawPeer();
        long ramBytes = 4 * MIB;
        { // RAM is closed after the connections (cleanup runs in reverse order)
            TckRam dst = closeLater(TckRam.of(ramBytes));
            dst.fill((byte) 0x5A);
            long pages = dst.pages(0);
            Listener l = closeLater(Transports.listen(listenUri, context(dst.layout())));
            CountDownLatch legit = new CountDownLatch(1);
            Recorder d = new Recorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    legit.countDown();
                }
            };
            CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> l.accept(d, Duration.ofSeconds(30)));
            try (RawStream bg = raw.openSession(connectUri(l), dst.layout().descriptors(), true, 256 * 1024)) {
                closeLater(accepted.get(30, TimeUnit.SECONDS));
                bg.write(pagesFrame(0, 0, 4, (byte) 0x11, true, false));
                await(legit, Duration.ofSeconds(10), "the legitimate frame");
                byte[] evil = switch (hostile) {
                    case BAD_PAYLOAD_LENGTH -> header(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST, 0, 4, 2, 4096);
                    case REGION_OUT_OF_RANGE -> header(FrameType.ZERO_RUN, 0, 7, 0, 1, 0);
                    case PAGES_PAST_THE_REGION_END -> pagesFrame(0, pages - 1, 2, (byte) 0x66, true, false);
                    case PAGE_INDEX_OVERFLOW -> header(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST, 0, Long.MAX_VALUE - 1, 4, 4 * 4096);
                    case NEGATIVE_COUNT -> header(FrameType.ZERO_RUN, 0, 0, 10, -1, 0);
                    case HUGE_PAGE_COUNT -> header(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST, 0, 0, 1L << 20, (int) (4096L << 20));
                    case BAD_HEADER_CRC -> {
                        byte[] f = pagesFrame(0, 8, 1, (byte) 0x66, true, false);
                        f[12] ^= 0x01; // flips a bit of 'first page' after the CRC was computed
                        yield f;
                    }
                    case BAD_DATA_DIGEST -> {
                        // pages 4..7 may be written before the digest is checked (see legitRangeEnd)
                        yield pagesFrame(0, 4, 4, (byte) 0x66, true, true);
                    }
                    case UNKNOWN_FRAME_TYPE -> header(99, 0, 0, 0, 0, 0);
                    case UNKNOWN_FLAGS -> header(FrameType.ZERO_RUN, 0x80, 0, 0, 1, 0);
                    case HANDSHAKE_FRAME_AGAIN -> header(FrameType.HELLO, 0, 0, 0, 0, 0);
                    case PAGE_REQUEST_TO_DESTINATION -> header(FrameType.PAGE_REQUEST, 0, 0, 0, 1, 0);
                    case PAGE_LIST_DUPLICATE_INDEX -> pageListFrame(0, new long[]{9, 9}, (byte) 0x66, true);
                    case PAGE_LIST_INDEX_OUT_OF_RANGE -> pageListFrame(0, new long[]{9, 1L << 40}, (byte) 0x66, true);
                    case PAGE_LIST_BAD_LENGTH -> header(FrameType.PAGE_LIST, FrameHeader.FLAG_DATA_DIGEST, 0, 0, 2, 2 * 4096);
                    case TRUNCATED_FRAME -> {
                        byte[] f = pagesFrame(0, 8, 16, (byte) 0x66, true, false);
                        yield Arrays.copyOf(f, FrameHeader.LENGTH + 10_000);
                    }
                };
                bg.write(evil);
                if (hostile == Hostile.TRUNCATED_FRAME) {
                    bg.close(); // the source vanishes mid-frame
                }
                TransportException e = d.awaitError(FAILURE_BOUND);
                if (hostile == Hostile.TRUNCATED_FRAME) {
                    assertTrue(e.kind() == Kind.CONNECTION_LOST || e.kind() == Kind.PROTOCOL, e.toString());
                } else {
                    assertEquals(Kind.PROTOCOL, e.kind(), e.toString());
                    assertTrue(e.getMessage().toLowerCase().contains(hostile.keyword), "error should name '" + hostile.keyword + "': " + e.getMessage());
                    String answer = errorText(bg.readUntilClosed(FAILURE_BOUND));
                    assertTrue(answer.toLowerCase().contains(hostile.keyword), "the source should be told '" + hostile.keyword + "': " + answer);
                }
                assertEquals(1, d.errorCount.get(), "onError must be called once");
            }
            // RAM: pages 0..3 hold the legitimate data; nothing outside the legitimately claimed pages changed.
            MemorySegment m = dst.memory(0);
            for (long pg = 0; pg < pages; pg++) {
                byte expect = pg < 4 ? (byte) 0x11 : (byte) 0x5A;
                if (pg >= 4 && pg < legitRangeEnd(hostile)) {
                    continue;
                }
                MemorySegment page = m.asSlice(pg * 4096, 4096);
                long bad = page.mismatch(filled(expect));
                assertEquals(-1, bad, "page " + pg + " byte " + bad + " changed by hostile input " + hostile);
            }
        }
    }

    private static long legitRangeEnd(Hostile h) {
        return switch (h) {
            case BAD_DATA_DIGEST -> 8;
            case TRUNCATED_FRAME -> 24;
            default -> 4;
        };
    }

    private static MemorySegment filled(byte b) {
        byte[] a = new byte[4096];
        Arrays.fill(a, b);
        return MemorySegment.ofArray(a);
    }

    private RawPeer requireRawPeer() {
        Optional<RawPeer> raw = rawPeer();
        assumeTrue(raw.isPresent(), "this transport has no raw byte stream for hostile-input cases");
        return raw.get();
    }

    // ======================================================================= wire encoding for raw peers

    /** A frame header with a correct CRC. */
    public static byte[] header(int type, int flags, int region, long first, long count, int payloadLength) {
        byte[] b = new byte[FrameHeader.LENGTH];
        new FrameHeader(MemorySegment.ofArray(b)).encode(type, flags, region, first, count, payloadLength);
        return b;
    }

    /** A PAGES frame filled with {@code fill}, with a data digest (correct, or wrong on request). */
    public static byte[] pagesFrame(int region, long first, int count, byte fill, boolean digest, boolean wrongDigest) {
        int len = count * 4096;
        byte[] b = new byte[FrameHeader.LENGTH + len + (digest ? 4 : 0)];
        new FrameHeader(MemorySegment.ofArray(b)).encode(FrameType.PAGES, digest ? FrameHeader.FLAG_DATA_DIGEST : 0, region, first, count, len);
        Arrays.fill(b, FrameHeader.LENGTH, FrameHeader.LENGTH + len, fill);
        if (digest) {
            java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
            crc.update(b, FrameHeader.LENGTH, len);
            int v = (int) crc.getValue() ^ (wrongDigest ? 1 : 0);
            MemorySegment.ofArray(b).set(Wire.U32, FrameHeader.LENGTH + len, v);
        }
        return b;
    }

    /** A PAGE_LIST frame (indices as given, not checked) filled with {@code fill}, with a correct data digest. */
    public static byte[] pageListFrame(int region, long[] pages, byte fill, boolean digest) {
        int n = pages.length;
        int payload = n * 8 + n * 4096;
        byte[] b = new byte[FrameHeader.LENGTH + payload + (digest ? 4 : 0)];
        MemorySegment s = MemorySegment.ofArray(b);
        new FrameHeader(s).encode(FrameType.PAGE_LIST, digest ? FrameHeader.FLAG_DATA_DIGEST : 0, region, 0, n, payload);
        for (int i = 0; i < n; i++) {
            s.set(Wire.U64, FrameHeader.LENGTH + 8L * i, pages[i]);
        }
        Arrays.fill(b, FrameHeader.LENGTH + 8 * n, FrameHeader.LENGTH + payload, fill);
        if (digest) {
            java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
            crc.update(b, FrameHeader.LENGTH, payload);
            s.set(Wire.U32, FrameHeader.LENGTH + payload, (int) crc.getValue());
        }
        return b;
    }

    /** Preamble plus a JOIN of background channel {@code channel} of {@code channels} to {@code session}. */
    public static byte[] joinBytes(long session, int channel, int channels) {
        byte[] join = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH];
        MemorySegment j = MemorySegment.ofArray(join);
        Wire.writePreamble(j, Wire.VERSION);
        new FrameHeader(j.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, channels, session, channel, 0);
        return join;
    }

    /** Preamble (with {@code version}) plus a HELLO for one background channel. */
    public static byte[] helloBytes(RamLayout layout, int version, boolean digest) {
        return helloBytes(layout.descriptors(), version, digest, 256 * 1024, 0x1234_5678_9abcL);
    }

    /** Preamble (with {@code version}) plus a HELLO for one background channel. */
    public static byte[] helloBytes(List<io.pagewire.transport.spi.RegionDescriptor> regions, int version, boolean digest, int maxPayload,
                                    long sessionId) {
        Hello hello = new Hello(sessionId, digest ? Hello.FLAG_DATA_DIGEST : 0, 1, maxPayload, 500, 5000, regions);
        int len = hello.encodedLength();
        byte[] b = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + len];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, version);
        hello.encode(s.asSlice(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH));
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.HELLO, 0, 0, 0, 0, len);
        return b;
    }

    /** Re-encodes the header of a preamble+frame buffer after its payload was edited. */
    private static byte[] rehead(byte[] b, int type) {
        MemorySegment s = MemorySegment.ofArray(b);
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH))
                .encode(type, 0, 0, 0, 0, b.length - Wire.PREAMBLE_LENGTH - FrameHeader.LENGTH);
        return b;
    }

    /** Extracts the text of the first ERROR frame in a destination's answer (after its preamble). */
    public static String errorText(byte[] answer) {
        int off = 0;
        if (answer.length >= Wire.PREAMBLE_LENGTH && MemorySegment.ofArray(answer).get(Wire.U64, 0) == Wire.MAGIC) {
            off = Wire.PREAMBLE_LENGTH;
        }
        while (off + FrameHeader.LENGTH <= answer.length) {
            FrameHeader h = new FrameHeader(MemorySegment.ofArray(Arrays.copyOfRange(answer, off, off + FrameHeader.LENGTH))).decode();
            int len = h.payloadLength();
            if (h.type() == FrameType.ERROR) {
                return new String(answer, off + FrameHeader.LENGTH, Math.min(len, answer.length - off - FrameHeader.LENGTH), StandardCharsets.UTF_8);
            }
            off += FrameHeader.LENGTH + len + (h.hasDataDigest() ? 4 : 0);
        }
        fail("no ERROR frame in the destination's answer of " + answer.length + " bytes");
        return null;
    }

    // ======================================================================= reports and child JVMs

    /** Prints a measurement and appends it to {@code target/tck-reports/<class>.txt}. */
    protected void report(String uri, String line) {
        String text = "[" + getClass().getSimpleName() + " " + uri + "] " + line;
        System.out.println(text);
        try {
            Path dir = Path.of("target", "tck-reports");
            Files.createDirectories(dir);
            Files.writeString(dir.resolve(getClass().getSimpleName() + ".txt"), text + System.lineSeparator(), StandardCharsets.UTF_8,
                    java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("cannot write the TCK report", e);
        }
    }

    /** A {@link TckPeer} in its own JVM, killed on close. */
    protected static final class ChildPeer implements AutoCloseable {
        final Process process;
        final String listeningUri;
        private final BufferedReader out;

        ChildPeer(String role, String uri, long bytes) throws IOException, InterruptedException, TimeoutException {
            List<String> cmd = new ArrayList<>();
            cmd.add(ProcessHandle.current().info().command().orElse("java"));
            String flags = System.getProperty("pagewire.jvm.flags", "--enable-native-access=ALL-UNNAMED");
            cmd.addAll(Arrays.asList(flags.trim().split("\\s+")));
            cmd.add("-Xmx256m");
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add(TckPeer.class.getName());
            cmd.addAll(List.of(role, uri, Long.toString(bytes), "2000", "200"));
            process = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
            // A source prints CONNECTED only after the test's accept(): the test waits for it then.
            listeningUri = role.equals("dest") ? awaitLine("LISTENING ", Duration.ofSeconds(60)).substring("LISTENING ".length()) : null;
        }

        /** Waits for a line starting with {@code prefix} on the child's stdout. */
        String awaitLine(String prefix, Duration timeout) throws InterruptedException, TimeoutException {
            CompletableFuture<String> f = CompletableFuture.supplyAsync(() -> {
                try {
                    String line;
                    while ((line = out.readLine()) != null) {
                        if (line.startsWith(prefix)) {
                            return line;
                        }
                    }
                    return null;
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            try {
                String line = f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
                assertNotNull(line, "child peer ended before printing " + prefix + " (exit " + (process.isAlive() ? "-" : process.exitValue()) + ")");
                return line;
            } catch (ExecutionException e) {
                throw new AssertionError("reading the child's output failed", e.getCause());
            }
        }

        @Override
        public void close() throws InterruptedException {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
