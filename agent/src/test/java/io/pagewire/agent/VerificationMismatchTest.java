package io.pagewire.agent;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Verification checks the memory, not the migration's bookkeeping: a destination page that
 * held data before the migration and that the source sends as zero (the destination writes
 * nothing for a zero run on a page it never received data for) makes the verdict a mismatch.
 * Real memfds, real TCP over loopback; both sides in this JVM so that the destination's RAM can
 * be prepared.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class VerificationMismatchTest {
    private static final long RAM = 64L << 20;
    private static final long STALE_PAGE = 1000;

    @Test
    void aStalePageAtTheDestinationIsAMismatchOnBothSides() throws Exception {
        try (GuestRam dstRam = GuestRam.create()) {
            GuestRegion dstRegion = dstRam.open(RegionSpec.memfd("pc.ram", RAM));
            dstRegion.page(STALE_PAGE).fill((byte) 0x5a); // left over from before: the source never wrote this page
            try (DestinationMigration dst = new DestinationMigration(dstRam); Listener l = dst.listen(dstRam, "tcp://127.0.0.1:0")) {
                CompletableFuture<MigrationStats> received = CompletableFuture.supplyAsync(() -> {
                    try {
                        return dst.receive(l, Duration.ofSeconds(60));
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException(e);
                    }
                });
                SourceMigration src;
                MigrationStats sent;
                try (GuestImage image = GuestImage.create(RAM, 1.0, 0, 5);
                     SyntheticGuest guest = new SyntheticGuest(image.region().memory(), image.region().pageSize(),
                             new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.IDLE, 0, 1), page -> true)) {
                    guest.start();
                    src = new SourceMigration(image.ram(), guest, image.balloons(), new MigrationConfig());
                    sent = src.run(l.uri());
                }
                MigrationStats got = received.get(60, TimeUnit.SECONDS);

                assertEquals(MigrationStats.Status.COMPLETED, sent.status(), sent.infoMigrate());
                assertEquals(MigrationStats.Status.COMPLETED, got.status(), got.infoMigrate());
                assertEquals(Boolean.FALSE, src.verified(), src.verification());
                assertTrue(src.verification().startsWith("mismatch: region 'pc.ram' has CRC32C "), src.verification());
                assertTrue(src.verification().endsWith(" at the source"), src.verification());
                assertEquals(src.verification(), dst.verification());
                assertEquals(0, sent.verifyReadBytes(), "the source never wrote its RAM: nothing to read");
                long read = got.verifyReadBytes();
                assertTrue(read >= dstRegion.pageSize() && read < RAM, "the destination read its populated page and not the holes: " + read);
            }
        }
    }
}
