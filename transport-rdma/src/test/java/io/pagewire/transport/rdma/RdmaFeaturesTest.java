package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.sim.SimStats;
import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Registration modes, staging for placers, the work a batch costs, and option errors. */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class RdmaFeaturesTest {
    private static final long MIB = 1 << 20;
    private static final Duration BOUND = Duration.ofSeconds(30);
    private final SimStats fabric = SimFabric.instance().stats();

    private static void complete(SimPair p, SimPair.Recorder s, SimPair.Recorder d) throws InterruptedException {
        d.connection = p.destination();
        p.source().background().sendComplete();
        d.awaitComplete(BOUND);
        s.awaitComplete(BOUND);
        assertNull(s.error.get());
        assertNull(d.error.get());
    }

    /** A file-backed region whose pages are only allocated when touched. */
    private static MemorySegment sparse(Path dir, String name, long bytes, Arena arena) throws Exception {
        try (FileChannel fc = FileChannel.open(dir.resolve(name), StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                StandardOpenOption.WRITE, StandardOpenOption.SPARSE)) {
            fc.truncate(bytes);
            fc.position(bytes - 1);
            fc.write(java.nio.ByteBuffer.wrap(new byte[1]));
            return fc.map(FileChannel.MapMode.READ_WRITE, 0, bytes, arena);
        }
    }

    @Test
    void pinAllRegistersRegionsOverTwoGibibytesInSeveralPieces(@TempDir Path dir) throws Exception {
        long size = 3L << 30;
        try (Arena arena = Arena.ofShared()) {
            MemorySegment srcMem = sparse(dir, "src", size, arena);
            MemorySegment dstMem = sparse(dir, "dst", size, arena);
            long pages = size / 4096;
            long[][] runs = {{0, 4}, {(1L << 30) / 4096 - 3, 6}, {(2L << 30) / 4096 - 1, 2}, {pages - 5, 5}};
            for (long[] r : runs) {
                for (long pg = r[0]; pg < r[0] + r[1]; pg++) {
                    TckRam.writePage(srcMem, pg * 4096, 4096, 77, pg, 1);
                }
            }
            long regBytesBefore = fabric.liveRegisteredBytes();
            SimPair.Recorder s = new SimPair.Recorder();
            SimPair.Recorder d = new SimPair.Recorder();
            RamLayout src = RamLayout.of(RamRegion.of("pc.ram", srcMem, 4096));
            RamLayout dst = RamLayout.of(RamRegion.of("pc.ram", dstMem, 4096));
            try (SimPair p = SimPair.open("rdma://127.0.0.1:0?pin-all=true", src, dst, s, d)) {
                RdmaConnection sc = (RdmaConnection) p.source();
                RdmaConnection dc = (RdmaConnection) p.destination();
                assertEquals(3, sc.localRam.liveRegistrations(), "three 1 GiB registrations of the source's 3 GiB");
                assertTrue(fabric.liveRegisteredBytes() - regBytesBefore >= 2 * size, "both sides' RAM is registered whole");
                long regs = fabric.registrations();
                for (long[] r : runs) {
                    p.source().background().sendPages(0, r[0], r[1]);
                }
                complete(p, s, d);
                assertEquals(regs, fabric.registrations(), "pin-all registers nothing while sending");
                for (long[] r : runs) {
                    long off = r[0] * 4096;
                    long len = r[1] * 4096;
                    assertEquals(-1, srcMem.asSlice(off, len).mismatch(dstMem.asSlice(off, len)), "run at page " + r[0]);
                }
                assertEquals(17, dc.stats().pagesReceived());
            }
            assertEquals(regBytesBefore, fabric.liveRegisteredBytes(), "everything is deregistered on close");
        }
    }

    @Test
    void onDemandRegistrationStaysWithinItsBoundEvictsAndUnregistersOnClose() throws Exception {
        long liveBefore = fabric.liveRegistrations();
        try (TckRam src = TckRam.of(32 * MIB); TckRam dst = TckRam.of(32 * MIB)) {
            src.fillPattern(12, 10, 1);
            AtomicInteger worstDst = new AtomicInteger();
            AtomicInteger worstSrc = new AtomicInteger();
            AtomicLong regsBefore = new AtomicLong(fabric.registrations());
            SimPair.Recorder s = new SimPair.Recorder();
            RdmaConnection[] conns = new RdmaConnection[2];
            SimPair.Recorder d = new SimPair.Recorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    if (conns[1] != null) {
                        worstDst.accumulateAndGet(conns[1].liveRegistrations(), Math::max);
                        worstSrc.accumulateAndGet(conns[0].liveRegistrations(), Math::max);
                    }
                }
            };
            String uri = "rdma://127.0.0.1:0?chunk-bytes=64k&reg-cache-chunks=8";
            try (SimPair p = SimPair.open(uri, src.layout(), dst.layout(), s, d)) {
                conns[0] = (RdmaConnection) p.source();
                conns[1] = (RdmaConnection) p.destination();
                for (int round = 1; round <= 2; round++) {
                    p.source().background().sendPages(0, 0, src.pages(0));
                    p.source().background().sendRoundEnd(round);
                }
                complete(p, s, d);
                assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
                assertTrue(worstDst.get() > 0 && worstDst.get() <= 8, "destination registrations peaked at " + worstDst.get());
                assertTrue(worstSrc.get() > 0 && worstSrc.get() <= 8, "source registrations peaked at " + worstSrc.get());
                long chunksSent = 2 * 32 * MIB / (64 << 10);
                assertTrue(fabric.registrations() - regsBefore.get() >= chunksSent,
                        "each 64k chunk registered again after eviction: " + (fabric.registrations() - regsBefore.get()));
            }
        }
        assertEquals(liveBefore, fabric.liveRegistrations(), "every registration is gone after close");
    }

    @Test
    void mixedModesWork() throws Exception {
        try (TckRam src = TckRam.of(8 * MIB); TckRam dst = TckRam.of(8 * MIB)) {
            src.fillPattern(13, 20, 1);
            io.pagewire.transport.spi.Listener l = Transports.listen("rdma://127.0.0.1:0", new TransportContext().layout(dst.layout()));
            SimPair.Recorder s = new SimPair.Recorder();
            SimPair.Recorder d = new SimPair.Recorder();
            java.util.concurrent.CompletableFuture<Connection> c = java.util.concurrent.CompletableFuture.supplyAsync(() -> Transports.connect(
                    l.uri() + "?pin-all=true&batch-bytes=1m", new TransportContext().layout(src.layout()).handler(s)));
            Connection dc = l.accept(d, BOUND);
            try (SimPair p = new SimPair(l, c.get(30, TimeUnit.SECONDS), dc, 0)) {
                p.source().background().sendPages(0, 0, src.pages(0));
                complete(p, s, d);
                assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
            }
        }
    }

    @Test
    void regionsWithAPlacerReceiveThroughStagingOnBothLanesAndAreNeverRegistered() throws Exception {
        long size = 64 * MIB;
        try (TckRam src = TckRam.of(size); Arena arena = Arena.ofShared()) {
            src.fillPattern(14, 0, 1);
            MemorySegment dstMem = arena.allocate(size, 4096);
            AtomicLong placed = new AtomicLong();
            RamLayout dst = RamLayout.of(RamRegion.of("pc.ram", dstMem, 4096).withPlacer((r, first, count, data) -> {
                assertEquals(count * 4096L, data.byteSize());
                MemorySegment.copy(data, 0, dstMem, first * 4096, data.byteSize());
                placed.addAndGet(count);
            }));
            AtomicReference<Connection> srcConn = new AtomicReference<>();
            SimPair.Recorder s = new SimPair.Recorder() {
                @Override
                public void onPageRequest(int region, long first, int count) {
                    srcConn.get().urgent().sendPages(region, first, count);
                }
            };
            AtomicLong urgentPages = new AtomicLong();
            SimPair.Recorder d = new SimPair.Recorder() {
                @Override
                public void onPages(LaneKind lane, int region, long first, int count) {
                    if (lane == LaneKind.URGENT) {
                        urgentPages.addAndGet(count);
                    }
                }
            };
            long regBytes = fabric.liveRegisteredBytes();
            try (SimPair p = SimPair.open("rdma://127.0.0.1:0", src.layout(), dst, s, d)) {
                srcConn.set(p.source());
                assertTrue(fabric.liveRegisteredBytes() - regBytes < size / 2, "the staged region is not registered: "
                        + (fabric.liveRegisteredBytes() - regBytes) + " bytes registered");
                // Postcopy's shape: requested pages on the urgent lane, the rest pushed in the background.
                for (int i = 0; i < 50; i++) {
                    p.destination().urgent().sendPageRequest(0, i * 97L, 3);
                }
                p.source().background().sendPages(0, 0, src.pages(0));
                complete(p, s, d);
                assertEquals(-1, src.memory(0).mismatch(dstMem));
                assertEquals(150, urgentPages.get());
                assertEquals(src.pages(0) + 150, placed.get());
            }
        }
    }

    @Test
    void aBatchIsWrittenWithoutACopyAndReportedWithOneSend() throws Exception {
        try (TckRam src = TckRam.of(64 * MIB); TckRam dst = TckRam.of(64 * MIB)) {
            src.fillPattern(15, 0, 1);
            SimPair.Recorder s = new SimPair.Recorder();
            SimPair.Recorder d = new SimPair.Recorder();
            try (SimPair p = SimPair.open("rdma://127.0.0.1:0?pin-all=true&batch-bytes=256k", src.layout(), dst.layout(), s, d)) {
                long sends = fabric.sendRequests();
                long writes = fabric.writeRequests();
                long written = fabric.writeBytes();
                long posts = fabric.postSendCalls();
                p.source().background().sendPages(0, 0, src.pages(0));
                p.source().background().flush();
                long batches = 64 * MIB / (256 << 10);
                // Heartbeats and credit returns may add a few SENDs; page data adds none.
                long extraSends = fabric.sendRequests() - sends - batches;
                assertTrue(extraSends >= 0 && extraSends < batches / 4, "SENDs beyond one per batch: " + extraSends);
                assertEquals(batches, fabric.writeRequests() - writes, "one RDMA WRITE per contiguous batch inside a registration");
                assertEquals(64 * MIB, fabric.writeBytes() - written, "page bytes moved by the NIC only");
                assertTrue(fabric.postSendCalls() - posts - batches < batches / 4, "one ibv_post_send per batch");
                complete(p, s, d);
                assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
                assertTrue(p.source().capabilities().containsAll(java.util.Set.of(Capability.ONE_SIDED_PLACEMENT, Capability.MEMORY_REGISTRATION,
                        Capability.ZERO_COPY_SEND, Capability.SEPARATE_URGENT_PATH)), p.source().capabilities().toString());
            }
        }
    }

    @Test
    void badOptionsAreRefusedNamingTheValue() throws Exception {
        try (TckRam ram = TckRam.of(4 * MIB)) {
            TransportContext ctx = new TransportContext().layout(ram.layout());
            assertBad("rdma://127.0.0.1:0?chunk-bytes=96k", ctx, "chunk-bytes=96k", "power of two");
            assertBad("rdma://127.0.0.1:0?chunk-bytes=4k", ctx, "chunk-bytes=4k", "65536");
            assertBad("rdma://127.0.0.1:0?reg-cache-chunks=2", ctx, "reg-cache-chunks=2", "8..");
            assertBad("rdma://127.0.0.1:0?queue-depth=2", ctx, "queue-depth=2", "4..1024");
            assertBad("rdma://127.0.0.1:0?pin-all=yes", ctx, "pin-all=yes", "true or false");
            assertBad("rdma://127.0.0.1:0?batch-bytes=100000", ctx, "batch-bytes=100000", "power of two");
            TransportException e = assertThrows(TransportException.class, () -> Transports.connect("rdma://127.0.0.1:0", ctx));
            assertTrue(e.getMessage().contains("port 0"), e.getMessage());
            try (Arena a = Arena.ofConfined()) {
                RamLayout huge = RamLayout.of(RamRegion.of("pc.ram", a.allocate(4 * MIB, 4096), 2 * MIB));
                TransportException p = assertThrows(TransportException.class,
                        () -> Transports.listen("rdma://127.0.0.1:0?batch-bytes=1m", new TransportContext().layout(huge)));
                assertTrue(p.getMessage().contains("batch-bytes=1048576") && p.getMessage().contains("page size 2097152"), p.getMessage());
            }
            e = assertThrows(TransportException.class, () -> Transports.connect("rdma://127.0.0.1:1", ctx));
            assertEquals(Kind.CONNECT_FAILED, e.kind());
            assertTrue(e.getMessage().contains("no listener") && e.getMessage().contains("simulated"), e.getMessage());
        }
        assertTrue(new RdmaTransportProvider("infiniband").unavailabilityCause().contains("expected disni"));
        assertNull(new RdmaTransportProvider("simulated").unavailabilityCause());
    }

    private static void assertBad(String uri, TransportContext ctx, String... words) {
        TransportException e = assertThrows(TransportException.class, () -> Transports.listen(uri, ctx));
        assertEquals(Kind.INVALID_URI, e.kind(), e.toString());
        for (String w : words) {
            assertTrue(e.getMessage().contains(w), "'" + w + "' missing in: " + e.getMessage());
        }
    }
}
