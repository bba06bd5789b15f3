package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.sim.SimQueuePair;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Peer death and broken hardware, injected into the simulated fabric, on both sides: a link that
 * drops (a killed peer process: its kernel tears the queue pairs down), a completion with an error
 * status, a remote access error, a silent partition. Each must surface as an error on both sides
 * within a bound, end the sender, and never report pages that did not land.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RdmaFailureTest {
    private static final Duration BOUND = Duration.ofSeconds(10);
    private static final long MIB = 1 << 20;
    private final List<AutoCloseable> cleanup = new ArrayList<>();

    @AfterEach
    void closeAll() throws Exception {
        for (int i = cleanup.size() - 1; i >= 0; i--) {
            cleanup.get(i).close();
        }
        SimFabric.instance().retryTimeoutNs(TimeUnit.SECONDS.toNanos(1));
    }

    private <T extends AutoCloseable> T later(T c) {
        cleanup.add(c);
        return c;
    }

    /** A destination that checks, for every page reported, that its RAM holds the source's bytes. */
    private static final class Checking extends SimPair.Recorder {
        final MemorySegment src;
        final MemorySegment dst;
        final AtomicReference<String> violation = new AtomicReference<>();
        final AtomicLong pages = new AtomicLong();

        Checking(TckRam src, TckRam dst) {
            this.src = src.memory(0);
            this.dst = dst.memory(0);
        }

        @Override
        public void onPages(LaneKind lane, int region, long first, int count) {
            long off = first * 4096;
            long len = count * 4096L;
            long bad = src.asSlice(off, len).mismatch(dst.asSlice(off, len));
            if (bad >= 0) {
                violation.compareAndSet(null, "pages [" + first + ", +" + count + ") reported but byte " + (off + bad) + " did not land");
            }
            pages.addAndGet(count);
        }
    }

    private record Running(SimPair pair, SimPair.Recorder src, Checking dst, CompletableFuture<Void> push) {
    }

    /** Connects and pushes rounds of the whole RAM until the connection fails; returns once pages flow. */
    private Running running(String uri, TransportContext srcCtx, TransportContext dstCtx, TckRam src, TckRam dst) throws Exception {
        SimPair.Recorder s = new SimPair.Recorder();
        Checking d = new Checking(src, dst);
        SimPair p = later(SimPair.open(uri, srcCtx.layout(src.layout()).handler(s), dstCtx.layout(dst.layout()), d));
        d.connection = p.destination();
        CompletableFuture<Void> push = CompletableFuture.runAsync(() -> {
            for (long round = 1; ; round++) {
                p.source().background().sendPages(0, 0, src.pages(0));
                p.source().background().sendRoundEnd(round);
            }
        });
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (d.pages.get() < 2 * src.pages(0)) {
            assertTrue(System.nanoTime() < deadline, "no progress: " + p.source().stats());
            assertTrue(!push.isDone(), "push ended early: " + push);
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(2)); // polling a condition with a deadline
        }
        return new Running(p, s, d, push);
    }

    private static void assertBothFailed(Running r, Set<Kind> srcKinds, Set<Kind> dstKinds) throws Exception {
        TransportException se = r.src.awaitError(BOUND);
        TransportException de = r.dst.awaitError(BOUND);
        assertTrue(srcKinds.contains(se.kind()), "source: " + se);
        assertTrue(dstKinds.contains(de.kind()), "destination: " + de);
        ExecutionException ex = assertThrows(ExecutionException.class, () -> r.push.get(BOUND.toMillis(), TimeUnit.MILLISECONDS));
        assertTrue(ex.getCause() instanceof TransportException, ex.getCause().toString());
        assertNull(r.dst.violation.get(), r.dst.violation.get());
        assertEquals(1, r.src.completed.getCount(), "a failed migration must never look complete");
        assertEquals(1, r.dst.completed.getCount(), "a failed migration must never look complete");
        assertEquals(1, r.src.errors.get(), "onError once");
        assertEquals(1, r.dst.errors.get(), "onError once");
        assertTrue(r.pair.source().isClosed() && r.pair.destination().isClosed());
        assertThrows(TransportException.class, () -> r.pair.destination().urgent().sendPageRequest(0, 0, 1));
        assertThrows(TransportException.class, () -> r.pair.source().urgent().sendPages(0, 0, 1));
    }

    private static TransportContext ctx() {
        return new TransportContext();
    }

    static final Set<Kind> LOST = Set.of(Kind.CONNECTION_LOST, Kind.PEER_ERROR);

    /** A link failure (what a killed peer looks like from the other side) on either queue pair. */
    @ParameterizedTest
    @EnumSource(LaneKind.class)
    void lostConnectionFailsBothSides(LaneKind lane) throws Exception {
        try (TckRam src = TckRam.of(16 * MIB); TckRam dst = TckRam.of(16 * MIB)) {
            src.fillPattern(3, 10, 1);
            Running r = running("rdma://127.0.0.1:0", ctx(), ctx(), src, dst);
            r.pair.queuePair(false, lane).breakConnection();
            assertBothFailed(r, LOST, LOST);
            r.pair.close();
        }
    }

    /** A completion with an error status, on the source's or the destination's side of either queue pair. */
    @ParameterizedTest
    @ValueSource(strings = {"source-background", "source-urgent", "destination-background", "destination-urgent"})
    void completionErrorFailsBothSides(String where) throws Exception {
        try (TckRam src = TckRam.of(16 * MIB); TckRam dst = TckRam.of(16 * MIB)) {
            src.fillPattern(4, 10, 1);
            TransportContext fast = ctx().heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(50));
            Running r = running("rdma://127.0.0.1:0", fast, ctx().heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(50)), src, dst);
            boolean passive = where.startsWith("destination");
            LaneKind lane = where.endsWith("urgent") ? LaneKind.URGENT : LaneKind.BACKGROUND;
            SimQueuePair qp = r.pair.queuePair(passive, lane);
            qp.injectCompletionError(Verbs.WC_GENERAL_ERR);
            assertBothFailed(r, LOST, LOST);
            TransportException own = passive ? r.dst.error.get() : r.src.error.get();
            // The injected error breaks the queue pair; the peer's next SEND fails and it reports that (ERROR frame)
            // possibly before the failing side polls its own error completion. The peer's report names either the
            // completion status it saw or the queue pair it found in the error state (when its post failed first).
            boolean ownStatus = own.getMessage().contains("IBV_WC_GENERAL_ERR");
            boolean peerReport = own.kind() == Kind.PEER_ERROR
                    && (own.getMessage().contains("IBV_WC_") || own.getMessage().contains("queue pair is in the error state"));
            assertTrue(ownStatus || peerReport, "the failing side names the status (its own, or the peer's report of it): " + own);
            r.pair.close();
        }
    }

    @Test
    void remoteAccessErrorFailsBothSides() throws Exception {
        try (TckRam src = TckRam.of(16 * MIB); TckRam dst = TckRam.of(16 * MIB)) {
            src.fillPattern(5, 10, 1);
            Running r = running("rdma://127.0.0.1:0", ctx(), ctx(), src, dst);
            r.pair.queuePair(false, LaneKind.BACKGROUND).injectCompletionError(Verbs.WC_REM_ACCESS_ERR);
            assertBothFailed(r, LOST, Set.of(Kind.CONNECTION_LOST, Kind.PEER_ERROR, Kind.PROTOCOL));
            // Whichever side notices first tells the other; the cause is named on the way.
            String both = r.src.error.get().getMessage() + " | " + r.dst.error.get().getMessage();
            assertTrue(both.contains("IBV_WC_REM_ACCESS_ERR") || both.contains("remote access"), both);
            r.pair.close();
        }
    }

    /** No disconnect, no error: the network drops everything. Heartbeats stop arriving; both sides time out. */
    @Test
    void silentPartitionIsDetectedByThePeerTimeoutOnBothSides() throws Exception {
        SimFabric.instance().retryTimeoutNs(TimeUnit.SECONDS.toNanos(20)); // hardware retries longer than our peer timeout
        try (TckRam src = TckRam.of(16 * MIB); TckRam dst = TckRam.of(16 * MIB)) {
            src.fillPattern(6, 10, 1);
            TransportContext s = ctx().peerTimeoutNs(TimeUnit.MILLISECONDS.toNanos(1000)).heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(100));
            TransportContext d = ctx().peerTimeoutNs(TimeUnit.MILLISECONDS.toNanos(1000)).heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(100));
            Running r = running("rdma://127.0.0.1:0", s, d, src, dst);
            long t0 = System.nanoTime();
            r.pair.queuePair(false, LaneKind.URGENT).partition();
            r.pair.queuePair(false, LaneKind.BACKGROUND).partition();
            assertBothFailed(r, Set.of(Kind.TIMEOUT), Set.of(Kind.TIMEOUT));
            long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            assertTrue(ms >= 900, "a timeout before the peer timeout: " + ms + " ms");
            r.pair.close();
        }
    }

    /** A failure before completion is never taken for completion, and a clean close after completion is not an error. */
    @Test
    void cleanCloseAfterCompletionIsNotAnError() throws Exception {
        try (TckRam src = TckRam.of(4 * MIB); TckRam dst = TckRam.of(4 * MIB)) {
            src.fillPattern(7, 10, 1);
            SimPair.Recorder s = new SimPair.Recorder();
            Checking d = new Checking(src, dst);
            SimPair p = later(SimPair.open("rdma://127.0.0.1:0", src.layout(), dst.layout(), s, d));
            d.connection = p.destination();
            p.source().background().sendPages(0, 0, src.pages(0));
            p.source().background().sendComplete();
            d.awaitComplete(BOUND);
            s.awaitComplete(BOUND);
            p.destination().close();
            p.source().close();
            assertNull(s.error.get());
            assertNull(d.error.get());
            assertNull(d.violation.get());
            assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
            Connection c = p.source();
            assertEquals(Kind.CLOSED, assertThrows(TransportException.class, () -> c.urgent().sendControl(MemorySegment.ofArray(new byte[1]))).kind());
        }
    }
}
