package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A hostile source on the fabric itself: RDMA operations the NIC must refuse (outside a
 * registration, a wrong rkey, a chunk not registered, reading destination RAM) and control messages
 * the destination must refuse (registrations over its bound or for the wrong regions, lying credit
 * returns, frames overrunning their message, control frames hidden in data). Every case fails the
 * destination with an error naming the violation, tells the source when it can, and leaves every
 * byte of destination RAM, and the guard memory around it, untouched.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RdmaHostileTest {
    private static final long RAM = 4 << 20;
    private static final long GUARD = 64 << 10;
    private static final Duration BOUND = Duration.ofSeconds(10);
    private final List<AutoCloseable> cleanup = new ArrayList<>();
    private final Arena arena = Arena.ofShared();
    /** Destination RAM with guard memory before and after it, all filled with 0x5A. */
    private final MemorySegment whole = arena.allocate(RAM + 2 * GUARD, 4096).fill((byte) 0x5A);
    private final MemorySegment ram = whole.asSlice(GUARD, RAM);

    @AfterEach
    void closeAll() throws Exception {
        for (int i = cleanup.size() - 1; i >= 0; i--) {
            cleanup.get(i).close();
        }
        arena.close();
    }

    private <T extends AutoCloseable> T later(T c) {
        cleanup.add(c);
        return c;
    }

    private record Victim(Connection destination, SimPair.Recorder handler, RdmaRawPeer.Session raw) {
    }

    private Victim victim(String uri, boolean placer) throws Exception {
        RamRegion region = RamRegion.of("pc.ram", ram, 4096);
        if (placer) {
            region = region.withPlacer((r, first, count, data) -> MemorySegment.copy(data, 0, ram, first * 4096, data.byteSize()));
        }
        RamLayout layout = RamLayout.of(region);
        Listener l = later(Transports.listen(uri, new TransportContext().layout(layout)));
        SimPair.Recorder d = new SimPair.Recorder();
        CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> l.accept(d, Duration.ofSeconds(30)));
        RdmaRawPeer.Session raw = later(new RdmaRawPeer().openSession(l.uri(), layout.descriptors(), false, 256 * 1024));
        Connection c = later(accepted.get(30, TimeUnit.SECONDS));
        return new Victim(c, d, raw);
    }

    /** The destination failed with PROTOCOL naming {@code keyword}, told the source, and wrote nothing. */
    private void assertRefused(Victim v, String keyword) throws Exception {
        assertRefused(v, keyword, 0, 0);
    }

    /** As above, but pages [{@code legitFrom}, {@code legitTo}) were legitimately sent before the violation. */
    private void assertRefused(Victim v, String keyword, long legitFrom, long legitTo) throws Exception {
        TransportException e = v.handler.awaitError(BOUND);
        assertEquals(Kind.PROTOCOL, e.kind(), e.toString());
        assertTrue(e.getMessage().contains(keyword), "error should name '" + keyword + "': " + e.getMessage());
        String told = TransportTck.errorText(v.raw.readUntilClosed(BOUND));
        assertTrue(told.contains(keyword), "the source should be told '" + keyword + "': " + told);
        ram.asSlice(legitFrom * 4096, (legitTo - legitFrom) * 4096).fill((byte) 0x5A);
        assertUntouched();
        assertEquals(1, v.handler.errors.get());
    }

    private void assertUntouched() {
        MemorySegment expect = Arena.ofAuto().allocate(whole.byteSize()).fill((byte) 0x5A);
        long bad = whole.mismatch(expect);
        assertEquals(-1, bad, "byte " + (bad - GUARD) + " relative to destination RAM changed");
    }

    /** The NIC refused the write; the destination's queue pair broke and the connection failed. */
    private void assertNicRefused(Victim v, int status) throws Exception {
        assertEquals(Verbs.WC_REM_ACCESS_ERR, status, Verbs.statusName(status));
        TransportException e = v.handler.awaitError(BOUND);
        assertTrue(e.kind() == Kind.PROTOCOL || e.kind() == Kind.CONNECTION_LOST, e.toString());
        assertTrue(v.destination.isClosed());
        assertUntouched();
    }

    private static byte[] frame(int type, int region, long first, long count, int payloadLength, byte[] payload) {
        byte[] b = new byte[FrameHeader.LENGTH + (payload == null ? 0 : payload.length)];
        new FrameHeader(MemorySegment.ofArray(b)).encode(type, 0, region, first, count, payloadLength);
        if (payload != null) {
            System.arraycopy(payload, 0, b, FrameHeader.LENGTH, payload.length);
        }
        return b;
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    // ================================================================== RDMA operations the NIC must refuse

    @Test
    void writingPastTheEndOfRegisteredRamIsRefusedByTheNic() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0?pin-all=true", false);
        Protocol.RegionKeys k = v.raw.regions.regions().get(0);
        byte[] data = new byte[8192];
        Arrays.fill(data, (byte) 0x66);
        assertNicRefused(v, v.raw.background.write(data, k.base() + RAM - 4096, k.rkeys()[0]));
    }

    @Test
    void writingBeforeRegisteredRamIsRefusedByTheNic() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0?pin-all=true", false);
        Protocol.RegionKeys k = v.raw.regions.regions().get(0);
        assertNicRefused(v, v.raw.background.write(new byte[4096], k.base() - 4096, k.rkeys()[0]));
    }

    @Test
    void aWrongRkeyIsRefusedByTheNic() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0?pin-all=true", false);
        Protocol.RegionKeys k = v.raw.regions.regions().get(0);
        assertNicRefused(v, v.raw.background.write(new byte[4096], k.base(), k.rkeys()[0] ^ 0x5a5a5a5a));
    }

    @Test
    void aChunkThatWasNeverRegisteredIsRefusedByTheNic() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        int chunk0 = v.raw.register(0, 0, 1); // a legitimate registration of the first 1 MiB
        Protocol.RegionKeys k = v.raw.regions.regions().get(0);
        assertNicRefused(v, v.raw.background.write(new byte[4096], k.base() + 2 * (1 << 20), chunk0));
    }

    @Test
    void readingDestinationRamIsRefusedByTheNic() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0?pin-all=true", false);
        Protocol.RegionKeys k = v.raw.regions.regions().get(0);
        assertNicRefused(v, v.raw.background.read(4096, k.base(), k.rkeys()[0]));
    }

    @Test
    void aLegitimateWriteLandsAndIsReportedOnlyWithItsNotification() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        byte[] page = new byte[4096];
        Arrays.fill(page, (byte) 0x11);
        assertEquals(Verbs.WC_SUCCESS, v.raw.writePages(0, 5 * 4096, page));
        assertEquals(-1, ram.asSlice(5 * 4096, 4096).mismatch(MemorySegment.ofArray(page)), "the write landed");
        assertEquals(0, v.destination.stats().pagesReceived(), "nothing is reported before the notification");
        v.raw.background.send(frame(FrameType.PAGES, 0, 5, 1, 4096, null));
        long deadline = System.nanoTime() + BOUND.toNanos();
        while (v.destination.stats().pagesReceived() < 1 && System.nanoTime() < deadline) {
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(2)); // polling a counter with a deadline
        }
        assertEquals(1, v.destination.stats().pagesReceived());
        assertEquals(null, v.handler.error.get());
    }

    // ================================================================== control messages the destination must refuse

    @Test
    void registeringMoreThanTheAnnouncedBoundIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0?reg-cache-chunks=8&chunk-bytes=64k", false);
        assertEquals(8, v.raw.regions.cacheChunks());
        v.raw.register(0, 0, 8);
        v.raw.urgent.send(frame(Protocol.RDMA_REGISTER, 0, 8, 1, 0, null)); // a ninth, naming no victim
        assertRefused(v, "over the bound of 8");
    }

    @Test
    void registeringAPinnedRegionIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0?pin-all=true", false);
        v.raw.urgent.send(frame(Protocol.RDMA_REGISTER, 0, 0, 1, 0, null));
        assertRefused(v, "registered whole (pin-all)");
    }

    @Test
    void registeringAStagedRegionIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", true);
        v.raw.urgent.send(frame(Protocol.RDMA_REGISTER, 0, 0, 1, 0, null));
        assertRefused(v, "staged");
    }

    @Test
    void registeringChunksOutsideTheRegionIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.urgent.send(frame(Protocol.RDMA_REGISTER, 0, 3, 2, 0, null)); // 4 chunks of 1 MiB: [3, 5) overruns
        assertRefused(v, "outside region");
    }

    @Test
    void evictingAChunkThatIsNotRegisteredIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        byte[] victim = new byte[12];
        MemorySegment.ofArray(victim).set(U32, 0, 0);
        MemorySegment.ofArray(victim).set(U64, 4, 2);
        v.raw.urgent.send(frame(Protocol.RDMA_REGISTER, 0, 0, 1, 12, victim));
        assertRefused(v, "is not registered");
    }

    @Test
    void registrationOnTheBackgroundLaneIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.background.send(frame(Protocol.RDMA_REGISTER, 0, 0, 1, 0, null));
        assertRefused(v, "urgent lane");
    }

    @Test
    void creditReturnsForMessagesNeverSentAreRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        byte[] m = new byte[Protocol.ENVELOPE];
        MemorySegment.ofArray(m).set(U32, 0, 1000); // acknowledges 1000 of our messages; the destination sent none on this queue pair
        v.raw.background.sendMessage(m);
        assertRefused(v, "acknowledges 1000 messages");
    }

    @Test
    void aMessageShorterThanItsEnvelopeIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.background.sendMessage(new byte[3]);
        assertRefused(v, "shorter than its 8-byte envelope");
    }

    @Test
    void aPayloadRunningPastItsMessageIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.background.send(frame(FrameType.CONTROL, 0, 0, 0, 1000, new byte[10]));
        assertRefused(v, "run past the end of the message");
    }

    @Test
    void aFrameHeaderCutByTheMessageEndIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.background.send(concat(frame(FrameType.ZERO_RUN, 0, 0, 1, 0, null), new byte[20]));
        assertRefused(v, "ends inside a frame header");
    }

    @Test
    void aControlFrameHiddenInADataMessageIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.background.send(concat(frame(FrameType.ZERO_RUN, 0, 0, 1, 0, null), frame(Protocol.RDMA_REGISTER, 0, 0, 1, 0, null)));
        assertRefused(v, "inside a data message");
    }

    @Test
    void aHandshakeFrameAfterTheHandshakeIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        byte[] setup = new byte[Protocol.Setup.LENGTH];
        new Protocol.Setup(16).encode(MemorySegment.ofArray(setup), 0);
        v.raw.urgent.send(frame(Protocol.RDMA_SETUP, 0, 0, 0, setup.length, setup));
        assertRefused(v, "handshake frame after the handshake");
    }

    @Test
    void aRoundAcknowledgementSentToTheDestinationIsRefused() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", false);
        v.raw.background.send(frame(Protocol.RDMA_ROUND_ACK, 0, 1, 0, 0, null));
        assertRefused(v, "may only be sent to the source");
    }

    @Test
    void stagedPagesOverflowingTheirSlotAreRefusedBeforeThePlacerRuns() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", true);
        assertNotEquals(0, v.raw.regions.stagingSlots());
        // Two full batches claimed in one message: the first fills the staging slot (and is placed: the
        // source may send those pages), the second would read past the slot and is refused.
        int pages = 256 * 1024 / 4096;
        v.raw.background.send(concat(frame(FrameType.PAGES, 0, 0, pages, pages * 4096, null),
                frame(FrameType.PAGES, 0, pages, pages, pages * 4096, null)));
        assertRefused(v, "staging slot", 0, pages);
    }

    @Test
    void pagesReportedOnTheStagedPathArePlacedOnlyFromTheStagingSlot() throws Exception {
        Victim v = victim("rdma://127.0.0.1:0", true);
        byte[] page = new byte[4096];
        Arrays.fill(page, (byte) 0x22);
        // Write the page into background staging slot 0, then report it: the placer copies it into RAM page 7.
        assertEquals(Verbs.WC_SUCCESS, v.raw.background.write(page, v.raw.regions.bgStagingAddress(), v.raw.regions.bgStagingRkey()));
        v.raw.background.send(frame(FrameType.PAGES, 0, 7, 1, 4096, null));
        long deadline = System.nanoTime() + BOUND.toNanos();
        while (v.destination.stats().pagesReceived() < 1 && System.nanoTime() < deadline) {
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(2)); // polling a counter with a deadline
        }
        assertEquals(1, v.destination.stats().pagesReceived());
        assertEquals(-1, ram.asSlice(7 * 4096, 4096).mismatch(MemorySegment.ofArray(page)));
        ram.asSlice(7 * 4096, 4096).fill((byte) 0x5A);
        assertUntouched();
    }
}
