package io.pagewire.transport.aeron;

import io.aeron.driver.MediaDriver;
import io.aeron.driver.ThreadingMode;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The data paths the TCK's 4 KiB pages with default settings do not reach, over real embedded (and external)
 * media drivers: frames above one MTU (offered, Aeron fragments them), frames above Aeron's largest message
 * (split over several messages, also larger than the whole publication window), regions with a placer,
 * several sources at once, a connection outliving its listener, the urgent streams in the bulk driver, and an
 * external driver named by aeron.dir.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class AeronDataPathTest {
    private final Pairs pairs = new Pairs();
    private final Arena arena = Arena.ofShared();

    @AfterEach
    void closeEverything() throws Exception {
        pairs.close();
        arena.close();
    }

    private RamLayout layout(long pageSize, long pages, long seed) {
        MemorySegment m = arena.allocate(pageSize * pages, 4096);
        if (seed != 0) {
            for (long off = 0; off < m.byteSize(); off += 8) {
                m.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, off, TckRamMix.mix(seed + off));
            }
        }
        return RamLayout.of(RamRegion.of("pc.ram", m, pageSize));
    }

    /** Same mixing as the TCK's RAM pattern, enough to make every page distinct. */
    static final class TckRamMix {
        static long mix(long z) {
            z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
            z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
            return z ^ (z >>> 31);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {
            // 64 KiB pages above a 16 KiB MTU: offered whole, fragmented by Aeron, reassembled into RAM without a copy
            "aeron:udp?endpoint=127.0.0.1:0|mtu=16k|batch-bytes=128k",
            "aeron:udp?endpoint=127.0.0.1:0|mtu=16k|batch-bytes=128k|data-digest=false",
            // 2 MiB pages above the largest message of a 1 MiB term (128 KiB): split, and larger than the 512 KiB window
            "aeron:udp?endpoint=127.0.0.1:0|mtu=8k|term-length=1m|batch-bytes=2m",
            "aeron:ipc?mtu=8k|term-length=1m|batch-bytes=2m|data-digest=false",
    })
    void largePagesTakeTheOfferAndSplitPathsAndArriveByteExact(String uri) throws Exception {
        long pageSize = uri.contains("batch-bytes=2m") ? 2 << 20 : 64 << 10;
        long pages = uri.contains("batch-bytes=2m") ? 12 : 96;
        RamLayout src = layout(pageSize, pages, 7);
        RamLayout dst = layout(pageSize, pages, 0);
        Semaphore answered = new Semaphore(0);
        AtomicReference<Connection> self = new AtomicReference<>();
        Pairs.Recorder s = new Pairs.Recorder() {
            @Override
            public void onPageRequest(int regionId, long firstPage, int pageCount) {
                self.get().urgent().sendPages(regionId, firstPage, pageCount);
            }
        };
        Pairs.Acking d = new Pairs.Acking() {
            @Override
            public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
                super.onPages(lane, regionId, firstPage, pageCount);
                if (lane == LaneKind.URGENT) {
                    answered.release();
                }
            }
        };
        Pairs.Pair p = pairs.open(uri, src, dst, s, d);
        self.set(p.source());
        p.source().background().sendPages(0, 0, pages - 2);
        p.source().background().sendRoundEnd(1);
        // the last two pages travel as answers to page requests, on the urgent streams
        p.destination().urgent().sendPageRequest(0, pages - 2, 1);
        p.destination().urgent().sendPageRequest(0, pages - 1, 1);
        assertTrue(answered.tryAcquire(2, 30, TimeUnit.SECONDS), "urgent answers");
        Pairs.complete(p, d, s);
        assertEquals(-1, src.region(0).memory().mismatch(dst.region(0).memory()));
        assertEquals(pages, p.destination().stats().pagesReceived());
        assertEquals(pages, d.pages.get());
    }

    @Test
    void regionWithAPlacerGetsItsPagesThroughIt() throws Exception {
        RamLayout src = layout(4096, 1024, 3);
        MemorySegment untouched = arena.allocate(4096 * 1024L, 4096).fill((byte) 0x5A);
        MemorySegment placed = arena.allocate(4096 * 1024L, 4096);
        AtomicLong calls = new AtomicLong();
        RamLayout dst = RamLayout.of(RamRegion.of("pc.ram", untouched, 4096).withPlacer((region, first, count, data) -> {
            calls.incrementAndGet();
            MemorySegment.copy(data, 0, placed, first * 4096, (long) count * 4096);
        }));
        Pairs.Recorder s = new Pairs.Recorder();
        Pairs.Acking d = new Pairs.Acking();
        Pairs.Pair p = pairs.open("aeron:udp?endpoint=127.0.0.1:0", src, dst, s, d);
        p.source().background().sendPages(0, 0, 1024);
        Pairs.complete(p, d, s);
        assertEquals(-1, src.region(0).memory().mismatch(placed));
        assertTrue(calls.get() >= 1024 / 15, "placer calls: " + calls.get());
        MemorySegment expected = arena.allocate(untouched.byteSize()).fill((byte) 0x5A);
        assertEquals(-1, untouched.mismatch(expected), "a region with a placer is never written by the transport");
    }

    @Test
    void twoSourcesAtOnceGetStreamsOfTheirOwn() throws Exception {
        try (TckRam a = TckRam.of(32 << 20); TckRam b = TckRam.of(32 << 20); TckRam dst = TckRam.of(32 << 20)) {
            a.fillPattern(1, 0, 1);
            b.fillPattern(1, 0, 1);
            long pages = a.pages(0);
            var l = pairs.later(Transports.listen("aeron:udp?endpoint=127.0.0.1:0", new TransportContext().layout(dst.layout())));
            Pairs.Recorder sa = new Pairs.Recorder();
            Pairs.Recorder sb = new Pairs.Recorder();
            CompletableFuture<Connection> ca = CompletableFuture.supplyAsync(() -> Transports.connect(l.uri(),
                    new TransportContext().layout(a.layout()).handler(sa)));
            CompletableFuture<Connection> cb = CompletableFuture.supplyAsync(() -> Transports.connect(l.uri(),
                    new TransportContext().layout(b.layout()).handler(sb)));
            Pairs.Acking da = new Pairs.Acking();
            Pairs.Acking db = new Pairs.Acking();
            Connection d1 = pairs.later(l.accept(da, Duration.ofSeconds(30)));
            Connection d2 = pairs.later(l.accept(db, Duration.ofSeconds(30)));
            Connection s1 = pairs.later(ca.get(30, TimeUnit.SECONDS));
            Connection s2 = pairs.later(cb.get(30, TimeUnit.SECONDS));
            CompletableFuture<Void> first = CompletableFuture.runAsync(() -> s1.background().sendPages(0, 0, pages / 2));
            s2.background().sendPages(0, pages / 2, pages - pages / 2);
            first.get(60, TimeUnit.SECONDS);
            // which accepted connection belongs to which source is up to the race: match them by what arrived
            da.connection = d1;
            db.connection = d2;
            s1.background().sendComplete();
            s2.background().sendComplete();
            assertTrue(sa.completed.await(60, TimeUnit.SECONDS) && sb.completed.await(60, TimeUnit.SECONDS));
            assertEquals(pages, da.pages.get() + db.pages.get());
            assertTrue(da.pages.get() > 0 && db.pages.get() > 0);
            assertEquals(-1, a.memory(0).mismatch(dst.memory(0)));
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"aeron:udp?endpoint=127.0.0.1:0", "aeron:udp?endpoint=127.0.0.1:0|urgent-driver=shared", "aeron:ipc?stream-id=0"})
    void aConnectionOutlivesItsListener(String uri) throws Exception {
        try (TckRam src = TckRam.of(16 << 20); TckRam dst = TckRam.of(16 << 20)) {
            src.fillPattern(5, 10, 1);
            Pairs.Recorder s = new Pairs.Recorder();
            Pairs.Acking d = new Pairs.Acking();
            Pairs.Pair p = pairs.open(uri, src.layout(), dst.layout(), s, d);
            p.listener().close();
            p.source().background().sendPages(0, 0, src.pages(0));
            Pairs.complete(p, d, s);
            assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
        }
    }

    @Test
    void urgentStreamsInTheBulkDriverStillWork() throws Exception {
        transferAndRequest("aeron:udp?endpoint=127.0.0.1:0|urgent-driver=shared", null);
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"udp", "ipc"})
    void anExternalDriverNamedByAeronDirIsUsedAndNoEmbeddedOneStarts(String media) throws Exception {
        Path dir = Files.createTempDirectory("pagewire-external-driver");
        try (MediaDriver driver = MediaDriver.launch(new MediaDriver.Context().aeronDirectoryName(dir.toString())
                .threadingMode(ThreadingMode.SHARED).dirDeleteOnStart(true).dirDeleteOnShutdown(true))) {
            String uri = media.equals("udp") ? "aeron:udp?endpoint=127.0.0.1:0|aeron.dir=" + dir : "aeron:ipc?aeron.dir=" + dir;
            transferAndRequest(uri, media.equals("udp") ? "|aeron.dir=" + dir : null);
            assertEquals(List.of(), Drivers.runningEmbedded(), "aeron.dir given: no embedded driver");
            pairs.close();
        } finally {
            Drivers.deleteTree(dir);
        }
    }

    private void transferAndRequest(String uri, String connectSuffix) throws Exception {
        try (TckRam src = TckRam.of(16 << 20); TckRam dst = TckRam.of(16 << 20)) {
            src.fillPattern(8, 10, 1);
            AtomicReference<Connection> self = new AtomicReference<>();
            Semaphore answered = new Semaphore(0);
            Pairs.Recorder s = new Pairs.Recorder() {
                @Override
                public void onPageRequest(int regionId, long firstPage, int pageCount) {
                    self.get().urgent().sendPages(regionId, firstPage, pageCount);
                }
            };
            Pairs.Acking d = new Pairs.Acking() {
                @Override
                public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
                    super.onPages(lane, regionId, firstPage, pageCount);
                    if (lane == LaneKind.URGENT) {
                        answered.release();
                    }
                }
            };
            Pairs.Pair p = pairs.open(uri, connectSuffix, src.layout(), dst.layout(), s, d);
            self.set(p.source());
            p.destination().urgent().sendPageRequest(0, 7, 3);
            assertTrue(answered.tryAcquire(30, TimeUnit.SECONDS), "urgent answer");
            p.source().background().sendPages(0, 0, src.pages(0));
            p.source().background().flush();
            if (uri.startsWith("aeron:udp")) {
                assertEquals(0, p.source().stats().backgroundPendingBytes(), "after flush the bulk driver has sent everything");
            }
            assertTrue(p.source().stats().backgroundPendingHighWaterBytes() > 0);
            Pairs.complete(p, d, s);
            assertEquals(-1, src.memory(0).mismatch(dst.memory(0)));
        }
    }
}
