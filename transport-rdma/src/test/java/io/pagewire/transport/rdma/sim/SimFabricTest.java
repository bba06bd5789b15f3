package io.pagewire.transport.rdma.sim;

import io.pagewire.transport.rdma.verbs.CompletionQueue;
import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.QpConfig;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.RdmaServer;
import io.pagewire.transport.rdma.verbs.SendBatch;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.rdma.verbs.WorkCompletions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The simulated fabric enforces what hardware enforces, and moves real bytes. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class SimFabricTest {
    private static final long S = TimeUnit.SECONDS.toNanos(5);
    private final SimFabric fabric = SimFabric.instance();
    private final Arena arena = Arena.ofShared();
    private final List<AutoCloseable> cleanup = new ArrayList<>();

    /** One end: domain, completion queue, queue pair, a 64 KiB buffer registered for everything. */
    private final class End {
        RdmaEndpoint ep;
        ProtectionDomain pd;
        CompletionQueue cq;
        QueuePair qp;
        MemorySegment buf = arena.allocate(64 << 10, 4096);
        MemoryRegion mr;
        final WorkCompletions wc = new WorkCompletions(64);
        final SendBatch batch = new SendBatch(16);

        End(RdmaEndpoint ep, int sendDepth, int recvDepth, int cqEntries, int access) throws VerbsException {
            this.ep = ep;
            pd = ep.device().allocPd();
            cq = ep.device().createCq(cqEntries);
            qp = ep.createQueuePair(pd, cq, new QpConfig("test", sendDepth, recvDepth, 0));
            mr = pd.register(buf, access);
            cleanup.add(() -> {
                ep.close();
                cq.close();
                mr.deregister();
                pd.close();
            });
        }

        /** Polls until {@code n} completions arrived. */
        WorkCompletions await(int n) throws VerbsException {
            WorkCompletions all = new WorkCompletions(256);
            long deadline = System.nanoTime() + S;
            while (all.count() < n) {
                assertTrue(System.nanoTime() < deadline, "only " + all.count() + " of " + n + " completions");
                int k = cq.poll(wc);
                for (int i = 0; i < k; i++) {
                    all.add(wc.wrId(i), wc.status(i), wc.opcode(i), wc.byteLength(i));
                }
                if (k == 0) {
                    cq.requestNotify();
                    if (cq.poll(wc) == 0) {
                        cq.awaitEvent(TimeUnit.MILLISECONDS.toNanos(10));
                    } else {
                        for (int i = 0; i < wc.count(); i++) {
                            all.add(wc.wrId(i), wc.status(i), wc.opcode(i), wc.byteLength(i));
                        }
                    }
                }
            }
            return all;
        }
    }

    private End active;
    private End passive;

    @BeforeEach
    void connect() throws Exception {
        connect(16, 8, 64);
    }

    private void connect(int sendDepth, int recvDepth, int cq) throws Exception {
        RdmaServer server = fabric.listen("127.0.0.1", 0);
        cleanup.add(server);
        RdmaEndpoint a = fabric.resolve("127.0.0.1", server.port(), S);
        active = new End(a, sendDepth, recvDepth, cq, Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
        CompletableFuture<Void> c = CompletableFuture.runAsync(() -> {
            try {
                a.connect(S);
            } catch (VerbsException e) {
                throw new RuntimeException(e);
            }
        });
        RdmaEndpoint p = server.awaitRequest(S);
        passive = new End(p, sendDepth, recvDepth, cq, Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
        p.accept();
        c.get(5, TimeUnit.SECONDS);
    }

    @AfterEach
    void close() throws Exception {
        for (int i = cleanup.size() - 1; i >= 0; i--) {
            cleanup.get(i).close();
        }
        cleanup.clear();
        arena.close();
    }

    @Test
    void rdmaWriteCopiesRealBytesIntoTheRemoteRegistration() throws Exception {
        active.buf.asSlice(0, 4096).fill((byte) 0x42);
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 7, Verbs.SEND_SIGNALED, active.mr.address(), 4096, active.mr.lkey(),
                passive.mr.address() + 8192, passive.mr.rkey());
        active.qp.postSend(active.batch);
        WorkCompletions wc = active.await(1);
        assertEquals(Verbs.WC_SUCCESS, wc.status(0));
        assertEquals(7, wc.wrId(0));
        assertEquals(-1, passive.buf.asSlice(8192, 4096).mismatch(active.buf.asSlice(0, 4096)));
        assertEquals(0, passive.buf.get(ValueLayout.JAVA_BYTE, 8191), "nothing before the target");
    }

    @Test
    void aWriteOutsideTheRemoteRegistrationFailsBothQueuePairs() throws Exception {
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, Verbs.SEND_SIGNALED, active.mr.address(), 4096, active.mr.lkey(),
                passive.mr.address() + (64 << 10) - 100, passive.mr.rkey());
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_REM_ACCESS_ERR, active.await(1).status(0));
        assertTrue(passive.qp.asyncError().contains("outside the registration"), passive.qp.asyncError());
        // The responder is in the error state too: its poller learns of the violation.
        assertThrows(VerbsException.class, () -> passive.qp.postRecv(1, passive.mr.address(), 64, passive.mr.lkey()));
    }

    @Test
    void aValidRkeyOfAnotherProtectionDomainIsRefused() throws Exception {
        ProtectionDomain other = passive.ep.device().allocPd();
        MemorySegment mem = arena.allocate(4096, 4096);
        MemoryRegion elsewhere = other.register(mem, Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
        active.buf.asSlice(0, 64).fill((byte) 0x42);
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, Verbs.SEND_SIGNALED, active.mr.address(), 64, active.mr.lkey(), elsewhere.address(),
                elsewhere.rkey());
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_REM_ACCESS_ERR, active.await(1).status(0), "IBV_WC_REM_ACCESS_ERR, as real verbs answer");
        assertTrue(passive.qp.asyncError().contains("another protection domain"), passive.qp.asyncError());
        assertEquals(0, mem.get(ValueLayout.JAVA_BYTE, 0), "nothing written");
        elsewhere.deregister();
        other.close();
    }

    @Test
    void aConnectRequestCarriesItsPrivateDataToTheListener() throws Exception {
        RdmaServer server = fabric.listen("127.0.0.1", 0);
        cleanup.add(server);
        RdmaEndpoint a = fabric.resolve("127.0.0.1", server.port(), S);
        End e = new End(a, 4, 4, 16, Verbs.ACCESS_LOCAL_WRITE);
        assertThrows(VerbsException.class, () -> a.connect(S, new byte[Verbs.MAX_CONNECT_PRIVATE_DATA + 1]));
        byte[] data = {1, 2, 3, 4, 5};
        CompletableFuture<Void> c = CompletableFuture.runAsync(() -> {
            try {
                a.connect(S, data);
            } catch (VerbsException ex) {
                throw new RuntimeException(ex);
            }
        });
        RdmaEndpoint p = server.awaitRequest(S);
        cleanup.add(p);
        assertEquals(java.util.Arrays.toString(data), java.util.Arrays.toString(p.privateData()));
        assertEquals(0, e.ep.privateData().length, "the active side has none to read");
        p.reject();
        assertThrows(Exception.class, () -> c.get(5, TimeUnit.SECONDS));
    }

    @Test
    void aWrongOrStaleRkeyOrMissingRemoteWriteAccessIsRefused() throws Exception {
        MemoryRegion readOnly = passive.pd.register(arena.allocate(4096, 4096), Verbs.ACCESS_LOCAL_WRITE);
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, Verbs.SEND_SIGNALED, active.mr.address(), 64, active.mr.lkey(), readOnly.address(),
                readOnly.rkey());
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_REM_ACCESS_ERR, active.await(1).status(0));
        assertTrue(passive.qp.asyncError().contains("needs 0x2"), passive.qp.asyncError());
        readOnly.deregister();
    }

    @Test
    void aDeregisteredRkeyIsRefused() throws Exception {
        MemoryRegion gone = passive.pd.register(arena.allocate(4096, 4096), Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
        long addr = gone.address();
        int key = gone.rkey();
        gone.deregister();
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, Verbs.SEND_SIGNALED, active.mr.address(), 64, active.mr.lkey(), addr, key);
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_REM_ACCESS_ERR, active.await(1).status(0));
    }

    @Test
    void aLocalBufferOutsideItsLkeyIsALocalProtectionError() throws Exception {
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, Verbs.SEND_SIGNALED, active.mr.address() + (64 << 10) - 10, 64, active.mr.lkey(),
                passive.mr.address(), passive.mr.rkey());
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_LOC_PROT_ERR, active.await(1).status(0));
    }

    @Test
    void sendsConsumePostedReceivesInOrderAndCompleteInOrder() throws Exception {
        for (int i = 0; i < 3; i++) {
            passive.qp.postRecv(100 + i, passive.mr.address() + i * 1024L, 1024, passive.mr.lkey());
        }
        active.batch.clear();
        for (int i = 0; i < 3; i++) {
            active.buf.set(ValueLayout.JAVA_BYTE, i, (byte) (i + 1));
            active.batch.send(i, Verbs.SEND_SIGNALED, active.mr.address() + i, 1, active.mr.lkey());
        }
        active.qp.postSend(active.batch);
        WorkCompletions sent = active.await(3);
        WorkCompletions got = passive.await(3);
        for (int i = 0; i < 3; i++) {
            assertEquals(i, sent.wrId(i), "send completions in posting order");
            assertEquals(100 + i, got.wrId(i), "receives consumed in posting order");
            assertEquals(Verbs.WC_RECV, got.opcode(i));
            assertEquals(1, got.byteLength(i));
            assertEquals(i + 1, passive.buf.get(ValueLayout.JAVA_BYTE, i * 1024L));
        }
    }

    @Test
    void unsignaledWorkCompletesSilentlyButASendAfterAWriteArrivesAfterItsData() throws Exception {
        passive.qp.postRecv(1, passive.mr.address() + 32768, 64, passive.mr.lkey());
        active.buf.asSlice(0, 4096).fill((byte) 9);
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 50, 0, active.mr.address(), 4096, active.mr.lkey(), passive.mr.address(), passive.mr.rkey())
                .send(51, Verbs.SEND_SIGNALED, active.mr.address(), 8, active.mr.lkey());
        active.qp.postSend(active.batch);
        WorkCompletions wc = active.await(1);
        assertEquals(51, wc.wrId(0), "only the signaled SEND completes");
        passive.await(1);
        assertEquals(9, passive.buf.get(ValueLayout.JAVA_BYTE, 4095), "the write's data is in place when its SEND arrives");
    }

    @Test
    void aSendWithoutAPostedReceiveIsAReceiverNotReadyError() throws Exception {
        active.batch.clear().send(1, Verbs.SEND_SIGNALED, active.mr.address(), 8, active.mr.lkey());
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_RNR_RETRY_EXC_ERR, active.await(1).status(0));
    }

    @Test
    void aMessageLongerThanTheReceiveBufferFailsBothSides() throws Exception {
        passive.qp.postRecv(1, passive.mr.address(), 16, passive.mr.lkey());
        active.batch.clear().send(1, Verbs.SEND_SIGNALED, active.mr.address(), 64, active.mr.lkey());
        active.qp.postSend(active.batch);
        assertEquals(Verbs.WC_REM_INV_REQ_ERR, active.await(1).status(0));
        assertEquals(Verbs.WC_LOC_LEN_ERR, passive.await(1).status(0));
    }

    @Test
    void queueDepthsAreHardLimits() throws Exception {
        for (int i = 0; i < 8; i++) {
            passive.qp.postRecv(i, passive.mr.address(), 64, passive.mr.lkey());
        }
        VerbsException e = assertThrows(VerbsException.class, () -> passive.qp.postRecv(9, passive.mr.address(), 64, passive.mr.lkey()));
        assertTrue(e.getMessage().contains("receive queue full"), e.getMessage());
        SendBatch big = new SendBatch(17);
        for (int i = 0; i < 17; i++) {
            big.rdma(Verbs.WR_RDMA_WRITE, i, 0, active.mr.address(), 8, active.mr.lkey(), passive.mr.address(), passive.mr.rkey());
        }
        e = assertThrows(VerbsException.class, () -> active.qp.postSend(big));
        assertTrue(e.getMessage().contains("send queue full"), e.getMessage());
    }

    @Test
    void registrationsLargerThanAnIntAndRemoteWriteWithoutLocalWriteAreRefused() throws Exception {
        MemorySegment huge;
        java.nio.file.Path file = java.nio.file.Files.createTempFile("sim-huge", ".ram");
        try (java.nio.channels.FileChannel fc = java.nio.channels.FileChannel.open(file, java.nio.file.StandardOpenOption.READ,
                java.nio.file.StandardOpenOption.WRITE)) {
            huge = fc.map(java.nio.channels.FileChannel.MapMode.READ_WRITE, 0, (1L << 31) + 4096, arena); // sparse: nothing is touched
        } finally {
            java.nio.file.Files.delete(file);
        }
        VerbsException e = assertThrows(VerbsException.class, () -> active.pd.register(huge, 0));
        assertTrue(e.getMessage().contains("int length"), e.getMessage());
        e = assertThrows(VerbsException.class, () -> active.pd.register(active.buf, Verbs.ACCESS_REMOTE_WRITE));
        assertTrue(e.getMessage().contains("requires local write"), e.getMessage());
        ProtectionDomain pd = active.ep.device().allocPd();
        MemoryRegion mr = pd.register(arena.allocate(4096, 4096), 0);
        assertThrows(IllegalStateException.class, pd::close, "a domain with live registrations cannot be closed");
        mr.deregister();
    }

    @Test
    void aCompletionQueueOverrunIsFatal() throws Exception {
        // A queue with room for two completions, three signalled writes.
        SimFabricTest t = new SimFabricTest();
        t.connect(8, 8, 2);
        t.active.batch.clear();
        for (int i = 0; i < 3; i++) {
            t.active.batch.rdma(Verbs.WR_RDMA_WRITE, i, Verbs.SEND_SIGNALED, t.active.mr.address(), 8, t.active.mr.lkey(), t.passive.mr.address(),
                    t.passive.mr.rkey());
        }
        t.active.qp.postSend(t.active.batch);
        // Consume nothing until the fabric has completed all three: polling between the second and
        // the third completion would make room and no overrun would happen (a race seen under load).
        java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(300));
        long deadline = System.nanoTime() + S;
        VerbsException overrun = null;
        while (overrun == null && System.nanoTime() < deadline) {
            try {
                t.active.cq.poll(t.active.wc);
                t.active.cq.awaitEvent(TimeUnit.MILLISECONDS.toNanos(5));
            } catch (VerbsException e) {
                overrun = e;
            }
        }
        assertTrue(overrun != null && overrun.getMessage().contains("overrun"), String.valueOf(overrun));
        t.close();
    }

    @Test
    void disconnectFlushesEverythingOutstandingOnBothSides() throws Exception {
        passive.qp.postRecv(1, passive.mr.address(), 64, passive.mr.lkey());
        active.qp.postRecv(2, active.mr.address(), 64, active.mr.lkey());
        active.ep.disconnect();
        assertEquals(Verbs.WC_WR_FLUSH_ERR, active.await(1).status(0));
        assertEquals(Verbs.WC_WR_FLUSH_ERR, passive.await(1).status(0));
        assertTrue(passive.qp.asyncError().contains("RDMA_CM_EVENT_DISCONNECTED"), passive.qp.asyncError());
        assertThrows(VerbsException.class, () -> active.qp.postSend(active.batch.clear().send(1, 0, active.mr.address(), 8, active.mr.lkey())));
    }

    @Test
    void connectingWhereNobodyListensIsRefused() throws Exception {
        RdmaEndpoint e = fabric.resolve("127.0.0.1", 1, S);
        ProtectionDomain pd = e.device().allocPd();
        CompletionQueue cq = e.device().createCq(4);
        e.createQueuePair(pd, cq, new QpConfig("lonely", 1, 1, 0));
        VerbsException ex = assertThrows(VerbsException.class, () -> e.connect(S));
        assertTrue(ex.getMessage().contains("no listener"), ex.getMessage());
        e.close();
        cq.close();
        pd.close();
    }

    @Test
    void injectedFailuresBehaveLikeHardware() throws Exception {
        passive.qp.postRecv(1, passive.mr.address(), 64, passive.mr.lkey());
        SimQueuePair qp = (SimQueuePair) active.qp;
        qp.injectCompletionError(Verbs.WC_GENERAL_ERR);
        active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, 0, active.mr.address(), 8, active.mr.lkey(), passive.mr.address(), passive.mr.rkey())
                .send(2, Verbs.SEND_SIGNALED, active.mr.address(), 8, active.mr.lkey());
        active.qp.postSend(active.batch);
        WorkCompletions wc = active.await(2);
        assertEquals(1, wc.wrId(0), "the failed request is reported although unsignalled");
        assertEquals(Verbs.WC_GENERAL_ERR, wc.status(0));
        assertEquals(2, wc.wrId(1));
        assertEquals(Verbs.WC_WR_FLUSH_ERR, wc.status(1), "everything after it is flushed");
        assertTrue(!qp.isReady());
    }

    @Test
    void aPartitionFailsWorkAfterTheRetryTimeoutWithoutTellingThePeer() throws Exception {
        long before = fabric.retryTimeoutNs();
        fabric.retryTimeoutNs(TimeUnit.MILLISECONDS.toNanos(200));
        try {
            SimQueuePair qp = (SimQueuePair) active.qp;
            qp.partition();
            long t0 = System.nanoTime();
            active.qp.postSend(active.batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1, Verbs.SEND_SIGNALED, active.mr.address(), 8, active.mr.lkey(),
                    passive.mr.address(), passive.mr.rkey()));
            assertEquals(Verbs.WC_RETRY_EXC_ERR, active.await(1).status(0));
            assertTrue(System.nanoTime() - t0 >= TimeUnit.MILLISECONDS.toNanos(190));
            assertTrue(((SimQueuePair) passive.qp).isReady(), "the peer has not noticed");
        } finally {
            fabric.retryTimeoutNs(before);
        }
    }
}
