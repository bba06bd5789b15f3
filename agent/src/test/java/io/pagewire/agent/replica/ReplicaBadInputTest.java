package io.pagewire.agent.replica;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.linux.NativeMemory;
import io.pagewire.ramtracker.snapshot.WriteProtectedRam;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.Transports;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A primary that sends the wrong thing after a good checkpoint 1 (pages 0..3): the secondary names the value and the
 * bound, and keeps its guest RAM at checkpoint 1, never at the pages of a checkpoint it refused.
 */
class ReplicaBadInputTest {
    private static final long RAM = 4L << 20;

    @Test
    void aCheckpointCountingMorePagesThanLandedIsNotApplied() throws Exception {
        String reason = secondaryAfter(c -> {
            c.background().sendPages(0, 8, 3);
            c.background().sendRoundEnd(1);
            c.urgent().sendControl(ReplicaMessages.checkpoint(2, 1, 7));
        });
        assertTrue(reason.contains("checkpoint 2 counts 7 pages, 3 landed in the RAM cache"), reason);
    }

    @Test
    void anEpochOutOfOrderIsRefused() throws Exception {
        String reason = secondaryAfter(c -> {
            c.background().sendPages(0, 0, 1);
            c.background().sendRoundEnd(1);
            c.urgent().sendControl(ReplicaMessages.checkpoint(5, 1, 1));
        });
        assertTrue(reason.contains("checkpoint 5 out of order: expected 2"), reason);
    }

    @ParameterizedTest
    @ValueSource(strings = {"replica-checkpoint 1 0", "replica-checkpoint 1 x 2", "replica-checkpoint 1 0 -2", "launch-missiles now"})
    void malformedMessagesAreRefused(String text) throws Exception {
        String reason = secondaryAfter(c -> c.urgent().sendControl(MemorySegment.ofArray(text.getBytes(StandardCharsets.US_ASCII))));
        assertTrue(reason.startsWith("bad replication message from the primary"), reason);
    }

    @Test
    void aSecondaryGuestRamThatHoldsDataIsZeroedBeforeReplication() {
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion svm = ram.open(RegionSpec.memfd("pc.ram", RAM));
            assumeTrue(WriteProtectedRam.unavailabilityCause(List.of(svm)) == null, "synchronous userfaultfd write-protect on shmem");
            NativeMemory.setLong(svm.memory(), 5 * svm.pageSize(), 42);
            NativeMemory.setLong(svm.memory(), RAM - 8, 43);
            try (ReplicaSecondary s = new ReplicaSecondary(List.of(svm), null, ReplicaSecondary.Apply.DIRTY)) {
                // Read from native code: the RAM is under userfaultfd write-protection now.
                assertEquals(0, NativeMemory.getLong(svm.memory(), 5 * svm.pageSize()), "a page the primary never sends reads zero, as there");
                assertEquals(0, NativeMemory.getLong(svm.memory(), RAM - 8));
                assertEquals(0, s.completeEpoch());
            }
        }
    }

    @Test
    void parsingNamesTheField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ReplicaMessages.parseApplied("replica-applied 1 2 three 4 0 0 0"));
        assertTrue(e.getMessage().contains("field 3 is not a decimal number"), e.getMessage());
        assertEquals(new ReplicaMessages.Checkpoint(2, 9, 100), ReplicaMessages.parseCheckpoint("replica-checkpoint 2 9 100"));
        assertThrows(IllegalArgumentException.class, () -> ReplicaMessages.parseCheckpoint("replica-checkpoint 0 9 100"));
    }

    @Test
    void pagesSentWhileTheSecondaryFillsLazilyAreRefused() throws Exception {
        String reason = secondaryAfter(ReplicaSecondary.Apply.LAZY, (c, controls) -> {
            // As a primary must: when checkpoint 1 left pages to fill, wait for replica-filled 1 before sending pages.
            ReplicaMessages.Applied first = ReplicaMessages.parseApplied(controls.take());
            if (first.lazyPages() > 0) {
                assertEquals(ReplicaMessages.FILLED, ReplicaMessages.type(controls.poll(30, java.util.concurrent.TimeUnit.SECONDS)));
            }
            // Checkpoint 2 (pages 4 and 5) is applied lazily: its filler is held until the connection fails.
            c.background().sendPages(0, 4, 2);
            c.background().sendRoundEnd(1);
            c.urgent().sendControl(ReplicaMessages.checkpoint(2, 1, 2));
            ReplicaMessages.Applied second = ReplicaMessages.parseApplied(controls.poll(30, java.util.concurrent.TimeUnit.SECONDS));
            assertEquals(2, second.epoch());
            assertEquals(2, second.lazyPages(), "pages 4 and 5 are left to fill");
            // ... and the primary does not wait for replica-filled 2.
            c.background().sendPages(0, 0, 2);
            try {
                c.background().flush();
            } catch (io.pagewire.transport.spi.TransportException e) {
                // The secondary may refuse the pages (and end the connection) before the flush returns: then the
                // flush reports the secondary's refusal, which must be this one.
                assertEquals(io.pagewire.transport.spi.TransportException.Kind.PEER_ERROR, e.kind(), e::toString);
                assertTrue(e.getMessage().contains("arrived while checkpoint 2 is being filled lazily"), e::toString);
            }
        });
        assertTrue(reason.contains("pages (region 0, 0+2) arrived while checkpoint 2 is being filled lazily"), reason);
    }

    /** Runs a secondary against {@code primary}'s messages; @return the failover reason (guest RAM checked all zero) */
    private static String secondaryAfter(Consumer<Connection> primary) throws Exception {
        return secondaryAfter(ReplicaSecondary.Apply.DIRTY, (c, controls) -> primary.accept(c));
    }

    /** What the test's primary does after checkpoint 1; {@code controls} has the secondary's later messages. */
    @FunctionalInterface
    private interface Script {
        void run(Connection c, java.util.concurrent.BlockingQueue<String> controls) throws Exception;
    }

    /**
     * As {@link #secondaryAfter(Consumer)} with the given apply; a LAZY secondary holds its fill of checkpoint 1 until
     * the connection fails, so that the primary's messages arrive during the fill.
     */
    private static String secondaryAfter(ReplicaSecondary.Apply apply, Script primary) throws Exception {
        try (GuestRam ram = GuestRam.create(); GuestRam source = GuestRam.create()) {
            GuestRegion svm = ram.open(RegionSpec.memfd("pc.ram", RAM));
            assumeTrue(WriteProtectedRam.unavailabilityCause(List.of(svm), apply == ReplicaSecondary.Apply.LAZY) == null,
                    "synchronous userfaultfd write-protect on shmem (lazy apply: MINOR and MISSING faults too)");
            GuestRegion src = source.open(RegionSpec.memfd("pc.ram", RAM));
            for (long p = 0; p < src.pageCount(); p++) {
                NativeMemory.setLong(src.memory(), p * src.pageSize(), 0x5eed0000L + p);
            }
            try (ReplicaSecondary secondary = new ReplicaSecondary(List.of(svm), null, apply);
                 Listener l = secondary.listen("tcp://127.0.0.1:0")) {
                secondary.holdFill(2, null);
                java.util.concurrent.BlockingQueue<String> controls = new java.util.concurrent.ArrayBlockingQueue<>(16);
                AtomicReference<ReplicaSecondary.Result> result = new AtomicReference<>();
                AtomicReference<Throwable> failure = new AtomicReference<>();
                Thread t = Thread.ofPlatform().start(() -> {
                    try {
                        result.set(secondary.run(l, Duration.ofSeconds(30), null));
                    } catch (Throwable e) {
                        failure.set(e);
                    }
                });
                java.util.concurrent.CountDownLatch applied = new java.util.concurrent.CountDownLatch(1);
                try (Connection c = Transports.connect(l.uri(), new TransportContext()
                        .layout(RamLayout.of(List.of(RamRegion.of("pc.ram", src.memory(), src.pageSize())))).handler(new MessageHandler() {
                            @Override
                            public void onControl(io.pagewire.transport.spi.LaneKind lane, MemorySegment payload) {
                                String text = ReplicaMessages.decode(payload);
                                controls.offer(text);
                                if (text.startsWith(ReplicaMessages.APPLIED + " 1 ")) {
                                    applied.countDown();
                                }
                            }
                        }))) {
                    c.background().sendPages(0, 0, 4);
                    c.background().sendRoundEnd(0);
                    c.urgent().sendControl(ReplicaMessages.checkpoint(1, 0, 4));
                    assertTrue(applied.await(30, java.util.concurrent.TimeUnit.SECONDS), "checkpoint 1 applied");
                    // The primary's RAM changes after checkpoint 1: what it sends now must not reach the guest RAM.
                    for (long p = 0; p < 4; p++) {
                        NativeMemory.setLong(src.memory(), p * src.pageSize() + 8, 0xbadL);
                    }
                    primary.run(c, controls);
                    t.join(30_000);
                }
                assertEquals(null, failure.get());
                ReplicaSecondary.Result r = result.get();
                assertTrue(r.failover());
                // The lazy script completes checkpoint 2 (pages 4 and 5 besides 0..3) before its bad pages.
                boolean lazy = apply == ReplicaSecondary.Apply.LAZY;
                long pages = lazy ? 6 : 4;
                assertEquals(lazy ? 2 : 1, r.epoch());
                for (long p = 0; p < 4; p++) {
                    NativeMemory.setLong(src.memory(), p * src.pageSize() + 8, 0);
                }
                long checkpoint1 = io.pagewire.agent.Checksums.appendZeros(io.pagewire.agent.Checksums.crc32c(src.memory().asSlice(0, pages * src.pageSize())),
                        RAM - pages * src.pageSize());
                assertEquals(Long.toHexString(checkpoint1), Long.toHexString(RamCrc.of(List.of(svm), List.of(svm.memory()))),
                        "the guest RAM is at the last complete checkpoint: nothing sent after it reached the guest RAM");
                return r.reason();
            }
        }
    }
}
