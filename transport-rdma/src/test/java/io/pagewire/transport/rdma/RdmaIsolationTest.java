package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.verbs.SendBatch;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.Closer;
import io.pagewire.transport.spi.tck.TransportTck;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RDMA isolation: each session's destination RAM is registered in a protection domain of its own,
 * so a queue pair that is not one of the session's cannot RDMA WRITE it even with the right rkey
 * and address: the simulated NIC completes the write with {@code IBV_WC_REM_ACCESS_ERR}, as a real
 * one does. Every case first lets the stranger try, then shows with the session's own queue pair
 * that the same rkey and address were good.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RdmaIsolationTest {
    private static final long RAM = 1 << 20;
    private static final Duration BOUND = Duration.ofSeconds(10);
    private static final long SESSION = 0x15_0_1a7e_d5e5L;
    private final Closer cleanup = new Closer();
    private final Arena arena = Arena.ofShared();
    private final MemorySegment ram = arena.allocate(RAM, 4096).fill((byte) 0x5A);
    private final RamLayout layout = RamLayout.of(RamRegion.of("pc.ram", ram, 4096));

    @TempDir
    Path dir;

    @AfterEach
    void closeAll() throws Exception {
        try {
            cleanup.closeAll();
        } finally {
            arena.close();
        }
    }

    private <T extends AutoCloseable> T later(T c) {
        return cleanup.add(c);
    }

    private record Victim(Listener listener, Connection destination, SimPair.Recorder handler, RdmaRawPeer.Session raw) {
        Protocol.RegionKeys keys() {
            return raw.regions.regions().get(0);
        }
    }

    private Victim victim(Listener l, long session, RdmaRawPeer.AfterHello afterHello) throws Exception {
        SimPair.Recorder d = new SimPair.Recorder();
        CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> l.accept(d, Duration.ofSeconds(30)));
        RdmaRawPeer.Session raw = later(new RdmaRawPeer().openSession(l.uri(), layout.descriptors(), false, 256 * 1024, session, afterHello));
        return new Victim(l, later(accepted.get(30, TimeUnit.SECONDS)), d, raw);
    }

    private Listener listener(String options) {
        return later(Transports.listen("rdma://127.0.0.1:0?pin-all=true" + options, new TransportContext().layout(layout)));
    }

    private static byte[] page(int value) {
        byte[] p = new byte[4096];
        Arrays.fill(p, (byte) value);
        return p;
    }

    private void assertUntouched() {
        long bad = ram.mismatch(Arena.ofAuto().allocate(RAM).fill((byte) 0x5A));
        assertEquals(-1, bad, "byte " + bad + " of destination RAM changed");
    }

    /** The session was not disturbed, and its own queue pair writes where the stranger could not. */
    private void assertSessionWritesWhereTheStrangerCouldNot(Victim v) throws Exception {
        assertNull(v.handler.error.get(), "the session must not notice the stranger");
        assertFalse(v.destination.isClosed());
        Protocol.RegionKeys k = v.keys();
        assertEquals(Verbs.WC_SUCCESS, v.raw.background.write(page(0x11), k.base() + 4096, k.rkeys()[0]), "the same rkey and address are good");
        assertEquals(-1, ram.asSlice(4096, 4096).mismatch(MemorySegment.ofArray(page(0x11))), "the session's write landed");
        ram.asSlice(4096, 4096).fill((byte) 0x5A);
        assertUntouched();
    }

    @Test
    void aStrangersQueuePairCannotWriteSessionRamKnowingTheRkey() throws Exception {
        Victim v = victim(listener(""), SESSION, () -> { });
        Protocol.RegionKeys k = v.keys();
        try (RdmaRawPeer.RawQp stranger = new RdmaRawPeer().new RawQp(v.listener.uri(), null, "stranger")) {
            int status = stranger.write(page(0x66), k.base() + 4096, k.rkeys()[0]);
            assertEquals(Verbs.WC_REM_ACCESS_ERR, status, Verbs.statusName(status));
        }
        assertUntouched();
        assertSessionWritesWhereTheStrangerCouldNot(v);
    }

    @Test
    void aQueuePairNamingAStartedSessionGetsADomainOfItsOwn() throws Exception {
        Victim v = victim(listener(""), SESSION, () -> { });
        Protocol.RegionKeys k = v.keys();
        try (RdmaRawPeer.RawQp stranger = new RdmaRawPeer().new RawQp(v.listener.uri(), null, "stranger", Protocol.joinRequest(SESSION))) {
            int status = stranger.write(page(0x66), k.base() + 4096, k.rkeys()[0]);
            assertEquals(Verbs.WC_REM_ACCESS_ERR, status, Verbs.statusName(status));
        }
        assertSessionWritesWhereTheStrangerCouldNot(v);
    }

    @Test
    void aStrangerThatNamedTheSessionBeforeItStartedIsDisconnectedBeforeRamIsRegistered() throws Exception {
        Listener l = listener("");
        RdmaListener rl = (RdmaListener) l;
        List<RdmaRawPeer.RawQp> stranger = new ArrayList<>();
        Victim v = victim(l, SESSION, () -> {
            long deadline = System.nanoTime() + BOUND.toNanos();
            while (!rl.claimed(SESSION)) {
                assertTrue(System.nanoTime() < deadline, "the HELLO did not claim a protection domain within " + BOUND);
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1)); // polling the listener's table with a deadline
            }
            // created in the session's domain: the listener cannot tell it from the background queue pair yet
            stranger.add(later(new RdmaRawPeer().new RawQp(l.uri(), null, "stranger", Protocol.joinRequest(SESSION))));
        });
        assertFalse(rl.claimed(SESSION), "a started session's domain is sealed");
        Protocol.RegionKeys k = v.keys();
        String outcome;
        try {
            outcome = Verbs.statusName(stranger.get(0).write(page(0x66), k.base() + 4096, k.rkeys()[0]));
        } catch (VerbsException e) {
            outcome = "refused at post: " + e.getMessage(); // its queue pair is already in the error state
        }
        assertNotEquals(Verbs.statusName(Verbs.WC_SUCCESS), outcome, "the stranger's queue pair was disconnected when the session started");
        assertUntouched();
        assertSessionWritesWhereTheStrangerCouldNot(v);
    }

    @Test
    void aJoinFromAQueuePairOutsideTheSessionsDomainIsRefused() throws Exception {
        Listener l = listener("");
        List<String> refusal = new ArrayList<>();
        // Without authentication a JOIN carries no MAC: only the domain tells this stranger from the background queue pair.
        Victim v = victim(l, SESSION, () -> {
            try (RdmaRawPeer.RawQp stranger = new RdmaRawPeer().new RawQp(l.uri(), null, "stranger")) {
                stranger.send(RdmaRawPeer.join(SESSION));
                refusal.add(TransportTck.errorText(stranger.readUntilClosed(BOUND)));
            }
        });
        assertTrue(refusal.get(0).contains("not created in its session's protection domain"), refusal.get(0));
        assertSessionWritesWhereTheStrangerCouldNot(v);
    }

    @Test
    void aQueuePairAuthenticatedToAnotherSessionCannotWriteThisSessionsRam() throws Exception {
        Path psk = dir.resolve("migration.psk");
        byte[] key = new byte[32];
        new SecureRandom().nextBytes(key);
        Files.write(psk, key);
        String auth = "&psk-file=" + psk;
        Listener l = listener(auth);
        String uri = "rdma://127.0.0.1:" + TransportUri.parse(l.uri()).port() + "?pin-all=true" + auth;
        MemorySegment srcA = arena.allocate(RAM, 4096).fill((byte) 0x0A);
        MemorySegment srcB = arena.allocate(RAM, 4096).fill((byte) 0x0B);
        Connection dstA = accept(l, srcA, uri, new SimPair.Recorder())[1];
        SimPair.Recorder srcBHandler = new SimPair.Recorder();
        RdmaConnection srcBConnection = (RdmaConnection) accept(l, srcB, uri, srcBHandler)[0];
        Protocol.RegionKeys a = ((RdmaConnection) dstA).dstRam.describe(RdmaRawPeer.DEPTH, 0).regions().get(0);

        try (RdmaRawPeer.RawQp stranger = new RdmaRawPeer().new RawQp(l.uri(), null, "unauthenticated")) {
            int status = stranger.write(page(0x66), a.base() + 4096, a.rkeys()[0]);
            assertEquals(Verbs.WC_REM_ACCESS_ERR, status, Verbs.statusName(status));
        }
        // session B's own, authenticated background queue pair, with a registered source buffer of B's
        int lkey = srcBConnection.localRam.lkey(0, 0, -1);
        srcBConnection.background.qp.postSend(new SendBatch(1).rdma(Verbs.WR_RDMA_WRITE, 0x150, Verbs.SEND_SIGNALED, srcB.address(), 4096, lkey,
                a.base() + 4096, a.rkeys()[0]));
        String why = String.valueOf(srcBHandler.awaitError(BOUND).getMessage());
        assertTrue(why.contains("REM_ACCESS") || why.contains("protection domain"), "session B's queue pair is refused: " + why);
        assertUntouched();
        assertFalse(dstA.isClosed(), "session A goes on");

        int rkeyA = a.rkeys()[0];
        SessionDomain domainA = ((RdmaListener) l).domainOf(((RdmaConnection) dstA).urgent);
        assertTrue(SimFabric.instance().isLiveRkey(rkeyA));
        assertFalse(SimFabric.instance().isDeallocated(domainA.pd));
        dstA.close();
        assertFalse(SimFabric.instance().isLiveRkey(rkeyA), "closing the session drops its registrations and keys");
        assertTrue(SimFabric.instance().isDeallocated(domainA.pd), "and deallocates its protection domain");
    }

    /** @return a source and the destination connection it reached, both closed after the test */
    private Connection[] accept(Listener l, MemorySegment src, String uri, SimPair.Recorder srcHandler) throws Exception {
        TransportContext ctx = new TransportContext().layout(RamLayout.of(RamRegion.of("pc.ram", src, 4096))).handler(srcHandler);
        CompletableFuture<Connection> s = CompletableFuture.supplyAsync(() -> Transports.connect(uri, ctx));
        Connection d = later(l.accept(new SimPair.Recorder(), Duration.ofSeconds(30)));
        return new Connection[] {later(s.get(30, TimeUnit.SECONDS)), d};
    }
}
