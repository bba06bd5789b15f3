package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.net.DatagramSocket;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Bounded waiting and failure propagation that the TCK's cases do not reach: a destination that stops consuming
 * (back pressure that never ends), an urgent lane whose peer stops reading, an unreachable destination, a missing
 * external driver, close from inside a handler. Real drivers, real UDP.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class AeronFailureTest {
    private static final Duration BOUND = Duration.ofSeconds(15);
    private final Pairs pairs = new Pairs();
    private final CountDownLatch release = new CountDownLatch(1);

    @AfterEach
    void closeEverything() throws Exception {
        release.countDown();
        pairs.close();
    }

    @Test
    void backPressureThatNeverEndsFailsBothSidesAfterTheStallTimeout() throws Exception {
        try (TckRam src = TckRam.of(64 << 20); TckRam dst = TckRam.of(64 << 20)) {
            Pairs.Recorder s = new Pairs.Recorder();
            Pairs.Recorder d = new Pairs.Recorder() {
                @Override
                public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
                    try {
                        release.await(); // a destination that stops consuming its background lane, but lives
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            };
            Pairs.Pair p = pairs.open("aeron:udp?endpoint=127.0.0.1:0|stall-timeout-ms=1000", src.layout(), dst.layout(), s, d);
            long t0 = System.nanoTime();
            TransportException e = assertThrows(TransportException.class, () -> p.source().background().sendPages(0, 0, src.pages(0)));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertEquals(Kind.TIMEOUT, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("made no progress for 1000 ms"), e.getMessage());
            assertTrue(ms < BOUND.toMillis(), "took " + ms + " ms");
            assertEquals(Kind.TIMEOUT, s.awaitError(BOUND).kind());
            // The destination hears why on its urgent lane, although its background thread is stuck in the handler.
            TransportException de = d.awaitError(BOUND);
            assertEquals(Kind.PEER_ERROR, de.kind(), de.toString());
            assertTrue(de.getMessage().contains("made no progress"), de.getMessage());
            assertTrue(p.source().isClosed() && p.destination().isClosed());
        }
    }

    @Test
    void anUrgentLaneWhosePeerStopsReadingFailsWithinThePeerTimeout() throws Exception {
        try (TckRam src = TckRam.of(4 << 20); TckRam dst = TckRam.of(4 << 20)) {
            Pairs.Recorder s = new Pairs.Recorder();
            Pairs.Recorder d = new Pairs.Recorder() {
                @Override
                public void onControl(LaneKind lane, MemorySegment payload) {
                    try {
                        release.await(); // the destination's urgent thread is stuck in a handler
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            };
            Listener l = pairs.later(Transports.listen("aeron:udp?endpoint=127.0.0.1:0", new TransportContext().layout(dst.layout())
                    .peerTimeoutNs(TimeUnit.SECONDS.toNanos(2)).heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(200))));
            CompletableFuture<Connection> f = CompletableFuture.supplyAsync(() -> Transports.connect(l.uri(),
                    new TransportContext().layout(src.layout()).handler(s).peerTimeoutNs(TimeUnit.SECONDS.toNanos(2))
                            .heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(200))));
            Connection dc = pairs.later(l.accept(d, Duration.ofSeconds(30)));
            Connection sc = pairs.later(f.get(30, TimeUnit.SECONDS));
            long t0 = System.nanoTime();
            byte[] big = new byte[64 * 1024];
            TransportException e = assertThrows(TransportException.class, () -> {
                while (true) {
                    sc.urgent().sendControl(MemorySegment.ofArray(big)); // fills the urgent window, then waits, bounded
                }
            });
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(e.kind() == Kind.TIMEOUT, e.toString());
            assertTrue(ms < BOUND.toMillis(), "took " + ms + " ms");
            // The stuck destination notices through its other threads: its background stream ends without COMPLETE.
            TransportException de = d.awaitError(BOUND);
            assertTrue(de.kind() == Kind.CONNECTION_LOST || de.kind() == Kind.PEER_ERROR || de.kind() == Kind.TIMEOUT, de.toString());
            assertTrue(dc.isClosed());
        }
    }

    @Test
    void anUnreachableDestinationFailsConnectWithinTheConnectTimeout() throws Exception {
        // A socket that is bound and never answers holds the port for the whole test: a probe closed
        // first would leave the number free for another process to take meanwhile.
        try (DatagramSocket silent = new DatagramSocket(0, java.net.InetAddress.getLoopbackAddress()); TckRam src = TckRam.of(1 << 20)) {
            int port = silent.getLocalPort();
            long t0 = System.nanoTime();
            TransportException e = assertThrows(TransportException.class, () -> Transports.connect("aeron:udp?endpoint=127.0.0.1:" + port,
                    new TransportContext().layout(src.layout()).connectTimeoutNs(TimeUnit.SECONDS.toNanos(1))));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertEquals(Kind.CONNECT_FAILED, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("no destination answered") && e.getMessage().contains(Integer.toString(port)), e.getMessage());
            assertTrue(ms < 10_000, "took " + ms + " ms");
        }
        assertEquals(java.util.List.of(), Drivers.runningEmbedded(), "a failed connect releases its drivers");
    }

    @Test
    void aeronDirWithoutARunningDriverIsUnavailableNamingTheDirectory() throws Exception {
        try (TckRam src = TckRam.of(1 << 20)) {
            TransportException e = assertThrows(TransportException.class, () -> Transports.connect(
                    "aeron:udp?endpoint=127.0.0.1:40999|aeron.dir=/nonexistent/aeron-dir", new TransportContext().layout(src.layout())));
            assertEquals(Kind.UNAVAILABLE, e.kind());
            assertTrue(e.getMessage().contains("/nonexistent/aeron-dir") && e.getMessage().contains("no media driver is running"), e.getMessage());
        }
    }

    @Test
    void aSecondListenerOnTheSameStreamIsRefusedAndStreamZeroPicksAFreeOne() throws Exception {
        try (TckRam dst = TckRam.of(1 << 20)) {
            Listener first = pairs.later(Transports.listen("aeron:ipc", new TransportContext().layout(dst.layout())));
            TransportException e = assertThrows(TransportException.class,
                    () -> Transports.listen("aeron:ipc", new TransportContext().layout(dst.layout())));
            assertEquals(Kind.INVALID_CONFIG, e.kind());
            assertTrue(e.getMessage().contains("already listens") && e.getMessage().contains("stream-id"), e.getMessage());
            Listener second = pairs.later(Transports.listen("aeron:ipc?stream-id=0", new TransportContext().layout(dst.layout())));
            assertTrue(!first.uri().equals(second.uri()) && second.uri().contains("stream-id="), second.uri());
            first.close();
            pairs.later(Transports.listen("aeron:ipc", new TransportContext().layout(dst.layout()))); // free again after close
        }
    }

    @Test
    void closeFromInsideAHandlerReleasesEverything() throws Exception {
        try (TckRam src = TckRam.of(4 << 20); TckRam dst = TckRam.of(4 << 20)) {
            CountDownLatch closedInHandler = new CountDownLatch(1);
            Connection[] self = new Connection[1];
            Pairs.Recorder s = new Pairs.Recorder();
            Pairs.Recorder d = new Pairs.Recorder() {
                @Override
                public void onControl(LaneKind lane, MemorySegment payload) {
                    self[0].close(); // on the destination's urgent thread
                    closedInHandler.countDown();
                }
            };
            Pairs.Pair p = pairs.open("aeron:udp?endpoint=127.0.0.1:0", src.layout(), dst.layout(), s, d);
            self[0] = p.destination();
            p.source().urgent().sendControl(MemorySegment.ofArray(new byte[]{1}));
            assertTrue(closedInHandler.await(10, TimeUnit.SECONDS));
            TransportException e = s.awaitError(BOUND);
            assertEquals(Kind.PEER_ERROR, e.kind(), e.toString());
            assertTrue(e.getMessage().contains("closed the connection before the migration completed"), e.getMessage());
            assertTrue(p.destination().isClosed());
            pairs.close();
            long deadline = System.nanoTime() + BOUND.toNanos();
            while (!Drivers.runningEmbedded().isEmpty()) {
                assertTrue(System.nanoTime() < deadline, "drivers still running: " + Drivers.runningEmbedded());
                java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10)); // a condition with a deadline
            }
        }
    }
}
