package io.pagewire.transport.unix;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.RegionFile;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.linux.FileDescriptors;
import io.pagewire.transport.spi.tck.Closer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code share-memory=true} over real unix sockets, real memfds and real mappings: the destination
 * maps the descriptors it is handed and sees the source's memory, live; no page crosses the socket.
 */
@Timeout(60)
class SharedMemoryTest {
    private static final long MIB = 1 << 20;
    private static final long PAGE = 4096;

    @TempDir
    Path dir;

    private final Arena arena = Arena.ofShared();
    private final Closer cleanup = new Closer();

    @AfterEach
    void closeEverything() throws Exception {
        try {
            cleanup.closeAll();
        } finally {
            arena.close();
        }
    }

    private <T extends AutoCloseable> T later(T c) {
        return cleanup.add(c);
    }

    /** A memfd of {@code size} bytes, mapped here, closed after the test. */
    private RamRegion memfdRegion(String name, long size) throws Exception {
        int fd = FileDescriptors.memfd(name, size);
        later(() -> FileDescriptors.close(fd));
        return RamRegion.of(name, FileDescriptors.mapShared(fd, 0, size, arena), PAGE).withFile(new RegionFile(fd, 0));
    }

    /** A destination handler that maps what it is handed (as an agent would) and acknowledges completion. */
    private final class Mapper implements MessageHandler {
        final ConcurrentHashMap<Integer, MemorySegment> mapped = new ConcurrentHashMap<>();
        final AtomicReference<TransportException> error = new AtomicReference<>();
        final AtomicLong pages = new AtomicLong();
        final CountDownLatch completed = new CountDownLatch(1);
        volatile Connection connection;

        @Override
        public void onOpen(Connection c) {
            connection = c;
        }

        @Override
        public void onSharedRegion(int regionId, RegionFile file) {
            try {
                long size = connection.layout().region(regionId).descriptor().sizeBytes();
                mapped.put(regionId, FileDescriptors.mapShared(file.fd(), file.offset(), size, arena));
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            } finally {
                FileDescriptors.close(file.fd()); // the mapping keeps the file
            }
        }

        @Override
        public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
            pages.addAndGet(pageCount);
        }

        @Override
        public void onComplete() {
            connection.urgent().sendComplete();
            completed.countDown();
        }

        @Override
        public void onError(TransportException e) {
            error.compareAndSet(null, e);
        }
    }

    private String uri(String name, boolean share) {
        return "unix://" + dir.resolve(name) + (share ? "?share-memory=true" : "");
    }

    @Test
    void theDestinationMapsTheSourcesMemoryAndSeesItLiveWithoutAPageSent() throws Exception {
        RamRegion shared = memfdRegion("guest.ram", 16 * MIB);
        MemorySegment copied = arena.allocate(MIB, PAGE);
        copied.fill((byte) 0x5a);
        RamLayout src = RamLayout.of(shared, RamRegion.of("vga.ram", copied, PAGE));
        RamLayout dst = RamLayout.of(RamRegion.of("guest.ram", arena.allocate(16 * MIB, PAGE), PAGE),
                RamRegion.of("vga.ram", arena.allocate(MIB, PAGE), PAGE));
        Listener l = later(Transports.listen(uri("m.sock", true), new TransportContext().layout(dst)));
        Mapper d = new Mapper();
        CountDownLatch acknowledged = new CountDownLatch(1);
        MessageHandler sourceHandler = new MessageHandler() {
            @Override
            public void onComplete() {
                acknowledged.countDown();
            }
        };
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri("m.sock", true),
                new TransportContext().layout(src).handler(sourceHandler)));
        Connection dc = later(l.accept(d, Duration.ofSeconds(30)));
        Connection sc = later(source.get(30, TimeUnit.SECONDS));
        assertEquals(Set.of(0), sc.sharedRegions());
        assertEquals(Set.of(0), dc.sharedRegions());
        assertTrue(sc.capabilities().contains(Capability.SHARED_MEMORY) && dc.capabilities().contains(Capability.SHARED_MEMORY));
        MemorySegment theirs = d.mapped.get(0);
        // The guest keeps running on the source: every write is there at once.
        for (long page = 0; page < 16 * MIB / PAGE; page += 97) {
            shared.memory().set(ValueLayout.JAVA_LONG, page * PAGE + 8, 0xfeed_0000L + page);
        }
        for (long page = 0; page < 16 * MIB / PAGE; page += 97) {
            assertEquals(0xfeed_0000L + page, theirs.get(ValueLayout.JAVA_LONG, page * PAGE + 8), "page " + page);
        }
        theirs.set(ValueLayout.JAVA_INT, 0, 0x0bad_cafe); // and the other way: one memory
        assertEquals(0x0bad_cafe, shared.memory().get(ValueLayout.JAVA_INT, 0));
        // Pause, final state, resume: only the region that is not shared is copied.
        sc.background().sendPages(1, 0, MIB / PAGE);
        long sentBefore = sc.stats().bytesSent();
        sc.background().sendComplete();
        assertTrue(d.completed.await(30, TimeUnit.SECONDS), "destination completion");
        assertEquals(MIB / PAGE, d.pages.get(), "only the copied region's pages arrived");
        assertEquals(-1, copied.mismatch(dst.region(1).memory()));
        assertTrue(sentBefore < 2 * MIB, "no shared page crossed the socket: " + sentBefore + " bytes sent");
        assertTrue(acknowledged.await(30, TimeUnit.SECONDS), "the source's acknowledgement");
        assertNull(d.error.get());
        sc.close();
        assertNull(sc.failure());
    }

    @Test
    void aDestinationThatDoesNotTakeMemoryRefusesTheSource() throws Exception {
        RamRegion shared = memfdRegion("guest.ram", MIB);
        Listener l = later(Transports.listen(uri("n.sock", false),
                new TransportContext().layout(RamLayout.of(RamRegion.of("guest.ram", arena.allocate(MIB, PAGE), PAGE)))));
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri("n.sock", true),
                new TransportContext().layout(RamLayout.of(shared))));
        TransportException e = assertThrows(TransportException.class, () -> {
            try {
                later(source.join());
            } catch (java.util.concurrent.CompletionException x) {
                throw x.getCause();
            }
        });
        assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
        assertTrue(e.getMessage().contains("share-memory=true"), e.getMessage());
        assertTrue(l.uri().contains("n.sock"));
    }

    @Test
    void aSourceWithNothingToShareIsTold() {
        MemorySegment anonymous = arena.allocate(MIB, PAGE);
        TransportException e = assertThrows(TransportException.class, () -> Transports.connect(uri("x.sock", true),
                new TransportContext().layout(RamLayout.of(RamRegion.of("guest.ram", anonymous, PAGE)))));
        assertEquals(Kind.INVALID_CONFIG, e.kind());
        assertTrue(e.getMessage().contains("backed by a file"), e.getMessage());
    }

    @Test
    void aFileTooShortForItsRegionIsRefused() throws Exception {
        int small = FileDescriptors.memfd("small", PAGE);
        later(() -> FileDescriptors.close(small));
        RamRegion lying = RamRegion.of("guest.ram", arena.allocate(MIB, PAGE), PAGE).withFile(new RegionFile(small, 0));
        Listener l = later(Transports.listen(uri("s.sock", true),
                new TransportContext().layout(RamLayout.of(RamRegion.of("guest.ram", arena.allocate(MIB, PAGE), PAGE)))));
        TransportException e = assertThrows(TransportException.class, () -> Transports.connect(uri("s.sock", true),
                new TransportContext().layout(RamLayout.of(lying))));
        assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
        assertTrue(e.getMessage().contains("holds " + PAGE + " bytes") && e.getMessage().contains("needs " + MIB), e.getMessage());
        assertTrue(l.uri().contains("s.sock"));
    }

    @Test
    void aHandlerThatDoesNotTakeMemoryFailsTheAcceptNamingWhy() throws Exception {
        RamRegion shared = memfdRegion("guest.ram", MIB);
        Listener l = later(Transports.listen(uri("h.sock", true),
                new TransportContext().layout(RamLayout.of(RamRegion.of("guest.ram", arena.allocate(MIB, PAGE), PAGE)))));
        AtomicReference<TransportException> sourceError = new AtomicReference<>();
        CountDownLatch told = new CountDownLatch(1);
        MessageHandler sourceHandler = new MessageHandler() {
            @Override
            public void onError(TransportException e) {
                sourceError.set(e);
                told.countDown();
            }
        };
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri("h.sock", true),
                new TransportContext().layout(RamLayout.of(shared)).handler(sourceHandler)));
        TransportException e = assertThrows(TransportException.class, () -> l.accept(new MessageHandler() { }, Duration.ofSeconds(30)));
        assertEquals(Kind.HANDLER_FAILED, e.kind(), e.toString());
        assertTrue(e.getMessage().contains("does not take shared memory"), e.getMessage());
        later(source.get(30, TimeUnit.SECONDS));
        assertTrue(told.await(30, TimeUnit.SECONDS), "the source hears why");
        assertEquals(Kind.PEER_ERROR, sourceError.get().kind(), sourceError.get().toString());
    }
}
