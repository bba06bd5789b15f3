package io.pagewire.agent;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Warms the JIT on the migration's data path before the guest's migration starts: one small migration inside this
 * JVM, source and destination on two threads over {@code unix://} in a private directory (mode 0700: only this user
 * can connect, and it lives for the warm-up only), with a writing guest (bulk round, dirty rounds, switchover) and
 * verification. A fresh JVM runs the first seconds of a migration interpreted or in C1 code; QEMU's migration is
 * native from the start. The JDK's AOT cache (the launcher's) brings classes and profiles, not compiled code, so
 * this is what makes the real migration run compiled: its rounds, and above all its downtime, are not spent on
 * warm-up. The stream kit, the page classification, placement and checksums are the same code for {@code tcp://}.
 *
 * <p>A warm-up that fails is reported by its exception; the caller decides (the commands print a warning and go on:
 * the real migration then only runs cold).
 */
public final class JitWarmUp {
    private JitWarmUp() {
    }

    /**
     * Runs the warm-up migration.
     *
     * @param bytes guest RAM of the warm-up (a multiple of 4 KiB; 64 MiB is enough for the hot loops to compile)
     * @return how long it took
     * @throws IllegalStateException when the warm-up migration did not complete and verify
     */
    public static Duration run(long bytes) throws InterruptedException {
        long t0 = System.nanoTime();
        Path dir;
        try {
            dir = Files.createTempDirectory("pagewire-warm-up-", PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        } catch (IOException e) {
            throw new IllegalStateException("JIT warm-up: cannot make a private directory for its socket: " + e.getMessage(), e);
        }
        Path socket = dir.resolve("warm-up.sock");
        try (GuestRam dstRam = GuestRam.create()) {
            dstRam.open(RegionSpec.anonymous("pc.ram", bytes));
            try (DestinationMigration dst = new DestinationMigration(dstRam); Listener l = dst.listen(dstRam, "unix://" + socket)) {
                dst.startPopulating(DestinationMigration.Populate.HINTED);
                CompletableFuture<MigrationStats> received = new CompletableFuture<>();
                Thread receiver = Thread.ofPlatform().daemon().name("pagewire-warm-up-destination").start(() -> {
                    try {
                        received.complete(dst.receive(l, Duration.ofSeconds(30)));
                    } catch (Throwable t) {
                        received.completeExceptionally(t);
                    }
                });
                MigrationStats sent;
                SourceMigration source;
                try (GuestImage image = GuestImage.create(RegionSpec.memfd("pc.ram", bytes), 0.25, 0, 1, false);
                     SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()),
                             image.region().pageSize(), new SyntheticGuest.Config(1, bytes / 2, SyntheticGuest.Pattern.RANDOM, bytes / 4, 7),
                             page -> true)) {
                    guest.start();
                    source = new SourceMigration(image.ram(), guest, image.balloons(), new MigrationConfig());
                    sent = source.run(l.uri());
                }
                MigrationStats got;
                try {
                    got = received.get(30, TimeUnit.SECONDS);
                } catch (ExecutionException | TimeoutException e) {
                    throw new IllegalStateException("JIT warm-up: the destination side did not end: " + e, e);
                } finally {
                    receiver.join(TimeUnit.SECONDS.toMillis(5));
                }
                if (sent.status() != MigrationStats.Status.COMPLETED || got.status() != MigrationStats.Status.COMPLETED) {
                    throw new IllegalStateException("JIT warm-up migration did not complete: source " + sent.status()
                            + (sent.errorDesc() != null ? " (" + sent.errorDesc() + ")" : "") + ", destination " + got.status()
                            + (got.errorDesc() != null ? " (" + got.errorDesc() + ")" : ""));
                }
                if (!Boolean.TRUE.equals(source.verified())) {
                    throw new IllegalStateException("JIT warm-up migration did not verify: " + source.verification());
                }
            }
        } finally {
            try {
                Files.deleteIfExists(socket);
                Files.deleteIfExists(dir);
            } catch (IOException e) {
                System.err.println("pagewire: JIT warm-up: cannot remove " + dir + ": " + e.getMessage());
            }
        }
        return Duration.ofNanos(System.nanoTime() - t0);
    }
}
