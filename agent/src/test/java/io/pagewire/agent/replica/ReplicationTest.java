package io.pagewire.agent.replica;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.linux.NativeMemory;
import io.pagewire.ramtracker.dirty.UffdWriteTracker;
import io.pagewire.ramtracker.snapshot.WriteProtectedRam;
import io.pagewire.ramtracker.Backing;
import io.pagewire.transport.spi.Listener;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import tools.jackson.databind.node.ObjectNode;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Primary and secondary in one JVM over real TCP on loopback, both guests writing: after every checkpoint the
 * secondary's guest RAM (read with its guest paused) equals the primary's RAM at that checkpoint, for each design.
 */
class ReplicationTest {
    private static final long RAM = 32L << 20;

    @ParameterizedTest(name = "{0} design, {1} apply")
    @CsvSource({"BACKGROUND, DIRTY", "PAUSE_ALL, WHOLE", "BACKGROUND, WHOLE", "BACKGROUND, LAZY"})
    void everyCheckpointIsExactlyThePrimarysRam(ReplicationConfig.Design design, ReplicaSecondary.Apply apply) throws Exception {
        assumeTrue(UffdWriteTracker.isAvailable(Backing.MEMFD), "userfaultfd write-protect async mode with PAGEMAP_SCAN on memfd");
        try (GuestRam svmRam = GuestRam.create()) {
            GuestRegion svm = svmRam.open(RegionSpec.memfd("pc.ram", RAM));
            assumeTrue(WriteProtectedRam.unavailabilityCause(List.of(svm)) == null, "synchronous userfaultfd write-protect on shmem");
            boolean lazy = apply == ReplicaSecondary.Apply.LAZY;
            assumeTrue(!lazy || WriteProtectedRam.unavailabilityCause(List.of(svm), true) == null,
                    "userfaultfd MINOR and MISSING faults on shmem with UFFDIO_CONTINUE_MODE_WP (lazy apply)");
            // The secondary's guest RAM holds data of its own before replication starts (a page every 61 KiB): pages the
            // primary never sends must still end up as the primary's (zero).
            for (long off = 0; off < RAM; off += 61L << 10) {
                NativeMemory.setLong(svm.memory(), off & ~7L, 0x5ec0dL + off);
            }
            Map<Long, Long> primaryCrc = new ConcurrentHashMap<>();
            Map<Long, Long> secondaryCrc = new ConcurrentHashMap<>();
            try (GuestImage image = GuestImage.create(RegionSpec.memfd("pc.ram", RAM), 0.5, 0, 3, false);
                 SyntheticGuest pvmGuest = new SyntheticGuest(image.region().memory().asSlice(0, RAM), image.region().pageSize(),
                         new SyntheticGuest.Config(1, 32L << 20, SyntheticGuest.Pattern.RANDOM, 16L << 20, 5), p -> true);
                 SyntheticGuest svmGuest = new SyntheticGuest(svm.memory().asSlice(0, RAM), svm.pageSize(),
                         new SyntheticGuest.Config(1, 16L << 20, SyntheticGuest.Pattern.RANDOM, 24L << 20, 9, SyntheticGuest.Access.STAMP), p -> true);
                 ReplicaSecondary secondary = new ReplicaSecondary(List.of(svm), svmGuest, apply);
                 Listener l = secondary.listen("tcp://127.0.0.1:0")) {
                pvmGuest.start();
                svmGuest.start();
                AtomicReference<ReplicaSecondary.Result> result = new AtomicReference<>();
                AtomicReference<Throwable> secondaryFailure = new AtomicReference<>();
                Thread s = Thread.ofPlatform().name("secondary").start(() -> {
                    try {
                        result.set(secondary.run(l, Duration.ofSeconds(30), e -> {
                            if (!lazy) {
                                secondaryCrc.put(e, secondary.checksum()); // guest paused before its resume
                                return;
                            }
                            // Lazy: the guest ran while the checkpoint was filled (on fault and by the filler); what it
                            // wrote since is undone from the saved copies, the rest must be the checkpoint as filled.
                            svmGuest.pause();
                            try {
                                secondaryCrc.put(e, secondary.checkpointChecksum());
                            } finally {
                                svmGuest.resume();
                            }
                        }));
                    } catch (Throwable t) {
                        secondaryFailure.set(t);
                    }
                });
                CountDownLatch fifth = new CountDownLatch(1);
                ReplicationConfig config = new ReplicationConfig().design(design).intervalNs(TimeUnit.MILLISECONDS.toNanos(50))
                        .passIntervalNs(TimeUnit.MILLISECONDS.toNanos(10)).checksums(true);
                try (ReplicationPrimary primary = ReplicationPrimary.connect(l.uri(), List.of(image.region()), pvmGuest, config, (epoch, pauseNs, crc) -> {
                    primaryCrc.put(epoch, crc);
                    if (epoch == 6) {
                        fifth.countDown();
                    }
                })) {
                    Thread p = Thread.ofPlatform().name("primary").start(() -> {
                        try {
                            primary.run();
                        } catch (Throwable t) {
                            secondaryFailure.compareAndSet(null, t);
                            fifth.countDown();
                        }
                    });
                    primary.requestCheckpoint();
                    assertTrue(fifth.await(60, TimeUnit.SECONDS), "six checkpoints within 60 s");
                    primary.stop();
                    p.join(TimeUnit.SECONDS.toMillis(30));
                    s.join(TimeUnit.SECONDS.toMillis(30));
                    assertNull(secondaryFailure.get());
                    assertFalse(result.get().failover(), result.get().reason());
                    ReplicationStats stats = primary.stats();
                    assertEquals(stats.lastEpoch(), result.get().epoch());
                    assertTrue(stats.checkpoints() >= 6);
                    for (long e = 1; e <= stats.lastEpoch(); e++) {
                        assertEquals(Long.toHexString(primaryCrc.get(e)), Long.toHexString(secondaryCrc.get(e)), "checkpoint " + e);
                    }
                    ObjectNode json = stats.toJson();
                    assertEquals(stats.checkpoints(), json.get("checkpoints").asLong());
                    assertTrue(json.get("secondary").get("secondary-dirty-pages").asLong() > 0, "the secondary's guest wrote between checkpoints");
                    if (lazy) {
                        long[] fills = stats.fillPages();
                        assertTrue(fills[0] + fills[1] > 0, "pages were filled lazily");
                        assertEquals(json.get("secondary").get("lazy-fill").get("pages").asLong(), fills[0] + fills[1],
                                "every page left to fill was filled once, on fault or by the filler");
                        assertEquals(0, json.get("secondary").get("copied-pages").asLong(), "nothing copied while paused");
                    }
                    if (design == ReplicationConfig.Design.BACKGROUND) {
                        assertTrue(stats.backgroundPages() > 0, "background passes sent pages");
                    } else {
                        assertEquals(0, stats.backgroundPages());
                    }
                }
            }
        }
    }
}
