package io.pagewire.agent;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live migrations between two JVM processes over real sockets: the source (a synthetic guest and
 * the engine) in this JVM, the destination ({@code pagewire receive}) in a child JVM, or the other
 * way round for the killed-source case.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class MigrationEndToEndTest {
    private static final long MIB = 1 << 20;
    private final List<Process> children = new ArrayList<>();

    @AfterEach
    void killChildren() throws InterruptedException {
        for (Process p : children) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** Pause/resume/throttle recorder around the synthetic guest. */
    private static final class Recording implements GuestControl {
        final SyntheticGuest guest;
        final AtomicLong pauses = new AtomicLong();
        final AtomicLong resumes = new AtomicLong();
        volatile long pausedAtNs = -1;
        volatile long longestPauseNs;
        volatile int maxThrottle;

        Recording(SyntheticGuest guest) {
            this.guest = guest;
        }

        @Override
        public void pause() {
            guest.pause();
            pauses.incrementAndGet();
            pausedAtNs = System.nanoTime();
        }

        @Override
        public void resume() {
            longestPauseNs = Math.max(longestPauseNs, System.nanoTime() - pausedAtNs);
            pausedAtNs = -1;
            resumes.incrementAndGet();
            guest.resume();
        }

        @Override
        public void throttle(int percent) {
            maxThrottle = Math.max(maxThrottle, percent);
            guest.throttle(percent);
        }
    }

    private record Result(MigrationStats stats, SourceMigration migration, Recording guest, Process destination, String destinationLast,
                          boolean guestRunsAfterwards) {
    }

    /** Whether the guest's vCPUs write again within a few seconds (they must, unless it was migrated away). */
    private static boolean runs(SyntheticGuest guest) {
        long before = guest.writes();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline) {
            if (guest.writes() != before) {
                return true;
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
        }
        return false;
    }

    private Process destination(long ram, String... extra) throws IOException {
        List<String> args = new ArrayList<>(List.of("receive", "--listen", "tcp://127.0.0.1:0", "--ram", Long.toString(ram), "--quiet"));
        args.addAll(List.of(extra));
        Process p = new ProcessBuilder(ChildJvm.command(args)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        children.add(p);
        return p;
    }

    private static String awaitLine(BufferedReader r, String prefix) throws IOException {
        String line;
        while ((line = r.readLine()) != null) {
            if (line.startsWith(prefix)) {
                return line;
            }
        }
        throw new AssertionError("child ended without printing " + prefix);
    }

    private Result migrate(long ram, double zero, double balloon, SyntheticGuest.Config guestConfig, MigrationConfig config)
            throws Exception {
        return migrate(ram, zero, balloon, guestConfig, config, new String[0]);
    }

    private Result migrate(long ram, double zero, double balloon, SyntheticGuest.Config guestConfig, MigrationConfig config,
                           String[] destinationArgs) throws Exception {
        Process dst = destination(ram, destinationArgs);
        BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
        String uri = awaitLine(out, "LISTENING ").substring("LISTENING ".length());
        try (GuestImage image = GuestImage.create(ram, zero, balloon, 3);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                     guestConfig, page -> !image.balloon().isBallooned(page))) {
            guest.start();
            Recording rec = new Recording(guest);
            SourceMigration m = new SourceMigration(image.ram(), rec, image.balloons(), config);
            MigrationStats stats = m.run(uri);
            boolean runsAfterwards = guestConfig.pattern() != SyntheticGuest.Pattern.IDLE && runs(guest);
            String last = out.readLine();
            assertTrue(dst.waitFor(30, TimeUnit.SECONDS), "destination did not exit");
            return new Result(stats, m, rec, dst, last, runsAfterwards);
        }
    }

    private static SyntheticGuest.Config guest(SyntheticGuest.Pattern p, long rate, long workingSet) {
        return new SyntheticGuest.Config(1, rate, p, workingSet, 11);
    }

    private static void assertCompletedAndVerified(Result r) {
        assertEquals(MigrationStats.Status.COMPLETED, r.stats.status(), r.stats.infoMigrate());
        assertEquals(Boolean.TRUE, r.migration.verified(), r.migration.verification());
        assertEquals(0, r.destination.exitValue(), "destination: " + r.destinationLast);
        assertTrue(r.destinationLast.startsWith("RECEIVED verified"), r.destinationLast);
        assertEquals(1, r.guest.pauses.get(), "the guest is paused once, for the switchover");
        assertEquals(0, r.guest.resumes.get(), "a completed migration leaves the source paused");
        assertTrue(!r.guestRunsAfterwards, "after the switchover the guest runs on the destination, not here");
    }

    @Test
    void idleGuestMigratesInOneRound() throws Exception {
        Result r = migrate(64 * MIB, 0.3, 0, guest(SyntheticGuest.Pattern.IDLE, 0, 0), new MigrationConfig());
        assertCompletedAndVerified(r);
        assertEquals(1, r.stats.rounds(), "nothing is dirtied, so nothing is sent twice: " + r.stats.infoMigrate());
        assertTrue(r.stats.duplicate() > 0 && r.stats.normal() > 0, r.stats.infoMigrate());
        assertEquals(64 * MIB / 4096, r.stats.duplicate() + r.stats.normal() + r.stats.skipped());
    }

    @Test
    void dirtyingGuestConvergesWithinTheDowntimeLimit() throws Exception {
        Result r = migrate(128 * MIB, 0.2, 0, guest(SyntheticGuest.Pattern.RANDOM, 64 * MIB, 32 * MIB),
                new MigrationConfig().downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(300)));
        assertCompletedAndVerified(r);
        assertTrue(r.guest.guest.writes() > 0, "the guest ran during the migration");
        assertTrue(r.stats.dirtySyncCount() >= 2, r.stats.infoMigrate());
        // The engine's decision, not the measured pause (a loaded machine may stretch any pause):
        // it switched over when the rest was expected to fit the limit.
        assertTrue(r.stats.expectedDowntimeMs() >= 0 && r.stats.expectedDowntimeMs() <= 300, r.stats.infoMigrate());
        assertTrue(r.stats.downtimeMs() >= 0, r.stats.infoMigrate());
    }

    /** A link of 16 MiB/s (max-bandwidth) against a guest dirtying 32 MiB at 256 MiB/s: precopy cannot converge at 50 ms. */
    private static MigrationConfig slowLink(MigrationConfig.Policy policy) {
        return new MigrationConfig().maxBandwidthBytesPerSec(16 * MIB).downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(50)).maxRounds(3)
                .policy(policy).throttleInitialPercent(50).throttleIncrementPercent(20);
    }

    private static final SyntheticGuest.Config TOO_FAST = guest(SyntheticGuest.Pattern.SEQUENTIAL, 256 * MIB, 32 * MIB);

    @Test
    void tooFastGuestWithForceSwitchesOverAnyway() throws Exception {
        Result r = migrate(48 * MIB, 0.5, 0, TOO_FAST, slowLink(MigrationConfig.Policy.FORCE));
        assertCompletedAndVerified(r);
        assertEquals(3, r.stats.rounds(), r.stats.infoMigrate());
        assertTrue(r.stats.expectedDowntimeMs() > 50, "forced: knowingly above the limit: " + r.stats.infoMigrate());
        assertEquals(0, r.guest.maxThrottle);
    }

    @Test
    void tooFastGuestWithCancelKeepsRunningOnTheSource() throws Exception {
        Result r = migrate(48 * MIB, 0.5, 0, TOO_FAST, slowLink(MigrationConfig.Policy.CANCEL));
        assertEquals(MigrationStats.Status.CANCELLED, r.stats.status(), r.stats.infoMigrate());
        assertTrue(r.stats.errorDesc().contains("did not converge"), r.stats.errorDesc());
        assertEquals(0, r.guest.pauses.get(), "a cancelled precopy never pauses the guest");
        assertNotEquals(0, r.destination.exitValue(), "the destination must not report success: " + r.destinationLast);
        assertTrue(r.destinationLast.startsWith("FAILED") && r.destinationLast.contains("cancelled"), r.destinationLast);
        assertTrue(r.guestRunsAfterwards, "the guest keeps running on the source after the cancel");
    }

    @Test
    void tooFastGuestWithThrottleConverges() throws Exception {
        Result r = migrate(48 * MIB, 0.5, 0, TOO_FAST, slowLink(MigrationConfig.Policy.THROTTLE).downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(300)));
        assertCompletedAndVerified(r);
        assertTrue(r.guest.maxThrottle >= 50, "auto-converge throttled the vCPUs: " + r.stats.infoMigrate());
        assertTrue(r.stats.rounds() > 3, r.stats.infoMigrate());
    }

    @Test
    void balloonHeavyGuestSendsSkipRunsNotPages() throws Exception {
        // An idle guest: what is sent does not depend on how long the migration takes (a writing guest re-dirties
        // pages for as long as the rounds last, which on a loaded machine exceeded the bound below).
        Result r = migrate(128 * MIB, 0.1, 0.75, guest(SyntheticGuest.Pattern.IDLE, 0, 0), new MigrationConfig());
        assertCompletedAndVerified(r);
        long pages = 128 * MIB / 4096;
        assertTrue(r.stats.skipped() >= pages / 2, r.stats.infoMigrate());
        assertTrue(r.stats.transferred() < 64 * MIB, "ballooned pages cost no data: " + r.stats.infoMigrate());
    }

    @Test
    void ramSizeNotAMultipleOf64Pages() throws Exception {
        long ram = 32 * MIB + 37 * 4096;
        Result r = migrate(ram, 0.2, 0, guest(SyntheticGuest.Pattern.SEQUENTIAL, 32 * MIB, ram), new MigrationConfig());
        assertCompletedAndVerified(r);
    }

    private static final String[] POSTCOPY_DESTINATION = {"--postcopy", "--vcpus", "2", "--pattern", "random", "--working-set", "48M",
            "--dirty-rate", "64M"};

    @Test
    void postcopyAfterTheBulkRoundPullsTheDirtyPagesAndVerifies() throws Exception {
        Result r = migrate(64 * MIB, 0.2, 0, guest(SyntheticGuest.Pattern.RANDOM, 64 * MIB, 48 * MIB),
                // A 1 ms limit: precopy cannot converge, so after the bulk round it switches to postcopy
                // (a precopy that converges completes as precopy, as in QEMU).
                new MigrationConfig().postcopy(true).postcopyAfterRounds(1).downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(1)),
                POSTCOPY_DESTINATION);
        assertCompletedAndVerified(r);
        String pc = r.migration.postcopyStats();
        assertTrue(pc != null && pc.contains("\"blocktime-ms\"") && pc.contains("\"p99\""), "destination postcopy statistics: " + pc);
        assertTrue(r.stats.downtimeMs() >= 0, r.stats.infoMigrate());
    }

    @Test
    void postcopyOnAMemfdKeepsStalePagesAllocatedAndStillVerifies() throws Exception {
        // MINOR mode: stale pages stay in the page cache, unmapped; a MINOR fault on one is asked for.
        String[] memfd = java.util.stream.Stream.concat(java.util.Arrays.stream(POSTCOPY_DESTINATION), java.util.stream.Stream.of("--backing", "memfd"))
                .toArray(String[]::new);
        Result r = migrate(64 * MIB, 0.2, 0, guest(SyntheticGuest.Pattern.RANDOM, 64 * MIB, 48 * MIB),
                new MigrationConfig().postcopy(true).postcopyAfterRounds(1).downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(1)), memfd);
        assertCompletedAndVerified(r);
        assertTrue(r.stats.postcopyRequests() > 0, "the destination asked for stale pages: " + r.migration.postcopyStats());
    }

    @Test
    void postcopyAtOnceMovesEveryPageOnDemandOrInTheBackground() throws Exception {
        Result r = migrate(64 * MIB, 0.3, 0, guest(SyntheticGuest.Pattern.IDLE, 0, 0),
                new MigrationConfig().postcopy(true).postcopyAfterRounds(0), POSTCOPY_DESTINATION);
        assertCompletedAndVerified(r);
        assertTrue(r.migration.postcopyStats().contains("\"postcopy-requests\""), r.migration.postcopyStats());
    }

    @Test
    void destinationKilledMidMigrationLeavesTheGuestRunning() throws Exception {
        long ram = 64 * MIB;
        Process dst = destination(ram);
        BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
        String uri = awaitLine(out, "LISTENING ").substring("LISTENING ".length());
        try (GuestImage image = GuestImage.create(ram, 0.1, 0, 5);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, ram), 4096,
                     guest(SyntheticGuest.Pattern.RANDOM, 32 * MIB, 16 * MIB), p -> true)) {
            guest.start();
            Recording rec = new Recording(guest);
            // 8 MiB/s: the bulk round alone takes seconds, so the kill lands mid-migration.
            SourceMigration m = new SourceMigration(image.ram(), rec, image.balloons(), new MigrationConfig().maxBandwidthBytesPerSec(8 * MIB));
            CompletableFuture<MigrationStats> run = CompletableFuture.supplyAsync(() -> m.run(uri));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (m.stats().status() != MigrationStats.Status.ACTIVE) {
                assertTrue(System.nanoTime() < deadline, "migration never became active");
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10));
            }
            dst.destroyForcibly();
            MigrationStats stats = run.get(30, TimeUnit.SECONDS);
            assertEquals(MigrationStats.Status.FAILED, stats.status(), stats.infoMigrate());
            assertTrue(stats.errorDesc() != null && !stats.errorDesc().isEmpty(), stats.infoMigrate());
            assertTrue(rec.pauses.get() == 0 || rec.longestPauseNs < TimeUnit.SECONDS.toNanos(5),
                    "never paused longer than a switchover");
            assertEquals(rec.pauses.get(), rec.resumes.get(), "a paused guest is resumed after the failure");
            long before = guest.writes();
            while (guest.writes() == before) {
                assertTrue(System.nanoTime() < deadline, "the guest does not run after the failed migration");
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
            }
        }
    }

    @Test
    void sourceKilledMidMigrationIsAFailureAtTheDestination() throws Exception {
        long ram = 64 * MIB;
        try (GuestRam guestRam = GuestRam.create()) {
            guestRam.open(RegionSpec.anonymous("pc.ram", ram));
            try (DestinationMigration dst = new DestinationMigration(guestRam); Listener l = dst.listen(guestRam, "tcp://127.0.0.1:0")) {
                Process src = new ProcessBuilder(ChildJvm.command(List.of("send", "--to", l.uri(), "--ram", Long.toString(ram),
                        "--max-bandwidth", "4M", "--dirty-rate", "16M", "--working-set", "8M")))
                        .redirectError(ProcessBuilder.Redirect.INHERIT).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
                children.add(src);
                CompletableFuture<MigrationStats> rx = CompletableFuture.supplyAsync(() -> {
                    try {
                        return dst.receive(l, Duration.ofSeconds(60));
                    } catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                });
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (dst.stats().normal() + dst.stats().duplicate() < 64) {
                    assertTrue(System.nanoTime() < deadline, "no pages arrived");
                    LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10));
                }
                src.destroyForcibly();
                MigrationStats stats = rx.get(30, TimeUnit.SECONDS);
                assertEquals(MigrationStats.Status.FAILED, stats.status(), stats.infoMigrate());
                assertTrue(stats.errorDesc().contains("closed") || stats.errorDesc().contains("reset"), stats.errorDesc());
            }
        }
    }

    /** A postcopy destination child JVM: its output, and the address it listens on. */
    private record PostcopyDestination(Process process, BufferedReader out, java.net.URI uri) {
    }

    private PostcopyDestination postcopyDestination(long ram, int vcpus, String workingSet, String rate, int recoverySeconds)
            throws IOException {
        Process dst = destination(ram, "--postcopy", "--vcpus", Integer.toString(vcpus), "--pattern", "random", "--working-set", workingSet,
                "--dirty-rate", rate, "--postcopy-recovery-timeout", Integer.toString(recoverySeconds));
        BufferedReader out = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
        return new PostcopyDestination(dst, out, java.net.URI.create(awaitLine(out, "LISTENING ").substring("LISTENING ".length())));
    }

    /** Postcopy at once through {@code proxy}, pushed at {@code pushRate} bytes/s, recovering for {@code recoverySeconds}. */
    private static SourceMigration postcopySource(GuestImage image, Recording rec, long pushRate, int recoverySeconds) {
        return new SourceMigration(image.ram(), rec, image.balloons(), new MigrationConfig().postcopy(true).postcopyAfterRounds(0)
                .maxBandwidthBytesPerSec(pushRate).postcopyRecoveryTimeoutNs(TimeUnit.SECONDS.toNanos(recoverySeconds)));
    }

    /** The destination child's last line, after it exited with {@code exit}. */
    private static String exited(PostcopyDestination d, int exit) throws IOException, InterruptedException {
        String last = d.out().readLine();
        assertTrue(d.process().waitFor(30, TimeUnit.SECONDS), "destination did not exit");
        assertEquals(exit, d.process().exitValue(), "destination: " + last);
        return last;
    }

    /** Waits until the migration is postcopy-active with {@code recoveries} recoveries behind it. */
    private static void awaitPostcopyActive(SourceMigration m, long recoveries, CompletableFuture<MigrationStats> run) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (m.stats().status() != MigrationStats.Status.POSTCOPY_ACTIVE || m.stats().postcopyRecoveries() < recoveries) {
            assertTrue(!run.isDone(), () -> "the migration ended before postcopy ran (recoveries " + recoveries + "): " + run.join().infoMigrate());
            assertTrue(System.nanoTime() < deadline, () -> "not postcopy-active after " + recoveries + " recoveries: " + m.stats().infoMigrate());
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
        }
    }

    @Test
    void postcopyResumesOverNewConnectionsAfterTheConnectionIsCutThreeTimes() throws Exception {
        long ram = 64 * MIB;
        PostcopyDestination dst = postcopyDestination(ram, 2, "48M", "64M", 30);
        try (CuttingProxy proxy = new CuttingProxy(dst.uri().getHost(), dst.uri().getPort());
             GuestImage image = GuestImage.create(ram, 0.2, 0, 9);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, ram), 4096,
                     guest(SyntheticGuest.Pattern.RANDOM, 32 * MIB, 48 * MIB), p -> true)) {
            guest.start();
            Recording rec = new Recording(guest);
            // Postcopy at once, pushed at 12 MiB/s: several seconds of postcopy to cut into, while the
            // destination's vCPUs fault on pages that are missing (and wait through each cut).
            SourceMigration m = postcopySource(image, rec, 12 * MIB, 30);
            CompletableFuture<MigrationStats> run = CompletableFuture.supplyAsync(() -> m.run(proxy.uri()));
            for (int cut = 0; cut < 3; cut++) {
                awaitPostcopyActive(m, cut, run);
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(400));
                proxy.cut();
            }
            MigrationStats stats = run.get(60, TimeUnit.SECONDS);
            assertEquals(MigrationStats.Status.COMPLETED, stats.status(), stats.infoMigrate());
            assertEquals(3, stats.postcopyRecoveries(), stats.infoMigrate());
            assertEquals(Boolean.TRUE, m.verified(), m.verification());
            assertEquals(0, rec.resumes.get(), "the source guest is never resumed once postcopy started");
            String pc = m.postcopyStats();
            assertTrue(pc.contains("\"recoveries\":3,"), pc);
            // Pages the destination held when it resumed are never sent again.
            assertTrue(pc.contains("\"held-pages-resent\":0,"), pc);
            String last = exited(dst, 0);
            assertTrue(last.startsWith("RECEIVED verified"), last);
        }
    }

    @Test
    void postcopyThatCannotReconnectFailsAndKeepsTheSourcePaused() throws Exception {
        long ram = 32 * MIB;
        PostcopyDestination dst = postcopyDestination(ram, 1, "16M", "16M", 2);
        try (CuttingProxy proxy = new CuttingProxy(dst.uri().getHost(), dst.uri().getPort());
             GuestImage image = GuestImage.create(ram, 0.2, 0, 9);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, ram), 4096,
                     guest(SyntheticGuest.Pattern.RANDOM, 16 * MIB, 16 * MIB), p -> true)) {
            guest.start();
            Recording rec = new Recording(guest);
            SourceMigration m = postcopySource(image, rec, 4 * MIB, 2);
            CompletableFuture<MigrationStats> run = CompletableFuture.supplyAsync(() -> m.run(proxy.uri()));
            awaitPostcopyActive(m, 0, run);
            org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> m.resume(null),
                    "nothing to resume while postcopy is active");
            int before = proxy.accepted();
            proxy.refuse(true);
            proxy.cut();
            MigrationStats stats = run.get(30, TimeUnit.SECONDS);
            assertEquals(MigrationStats.Status.FAILED, stats.status(), stats.infoMigrate());
            assertTrue(stats.errorDesc().contains("postcopy-paused"), stats.errorDesc());
            assertTrue(proxy.accepted() > before + 1, "the source retried on its own: " + (proxy.accepted() - before) + " connections");
            assertEquals(0, rec.resumes.get(), "split state: the source guest stays paused");
            String last = exited(dst, 1);
            assertTrue(last.startsWith("FAILED postcopy-paused"), last);
        }
    }

    @Test
    void migrateResumeCommandReconnectsAPausedPostcopyToAnotherAddress() throws Exception {
        long ram = 32 * MIB;
        PostcopyDestination dst = postcopyDestination(ram, 1, "16M", "16M", 60);
        try (CuttingProxy first = new CuttingProxy(dst.uri().getHost(), dst.uri().getPort());
             CuttingProxy second = new CuttingProxy(dst.uri().getHost(), dst.uri().getPort())) {
            Process src = new ProcessBuilder(ChildJvm.command(List.of("send", "--to", first.uri(), "--ram", Long.toString(ram),
                    "--postcopy", "--postcopy-after-rounds", "0", "--max-bandwidth", "4M", "--postcopy-recovery-timeout", "60",
                    "--monitor-stdio", "--json"))).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            children.add(src);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (first.accepted() < 3) { // the urgent connection and two background channels
                assertTrue(System.nanoTime() < deadline, "the source never connected");
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10));
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1500)); // postcopy at once: running by now, 32 MiB at 4 MiB/s
            first.refuse(true);
            first.cut();
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1000)); // automatic retries meet a refusing address
            assertEquals(0, second.accepted(), "nothing went to the second address unasked");
            try (java.io.Writer cmd = new java.io.OutputStreamWriter(src.getOutputStream(), StandardCharsets.UTF_8)) {
                cmd.write("migrate-resume " + second.uri() + "\n");
                cmd.flush();
                assertTrue(src.waitFor(60, TimeUnit.SECONDS), "the source did not finish after migrate-resume");
            }
            String json = new String(src.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertEquals(0, src.exitValue(), json);
            assertTrue(json.contains("\"status\":\"completed\"") && json.contains("\"postcopy-recoveries\":1,"), json);
            assertTrue(json.contains("\"verified\":true"), json);
            assertTrue(second.accepted() >= 3, "resumed through the second address");
            String last = exited(dst, 0);
            assertTrue(last.startsWith("RECEIVED verified"), last);
        }
    }

    @Test
    void migrateStartPostcopyCommandSwitchesAPrecopyThatWouldNotConverge() throws Exception {
        long ram = 32 * MIB;
        PostcopyDestination dst = postcopyDestination(ram, 1, "16M", "16M", 30);
        // A 1 ms downtime limit and 1000 rounds: without the command this precopy would go on and on.
        Process src = new ProcessBuilder(ChildJvm.command(List.of("send", "--to", dst.uri().toString(), "--ram", Long.toString(ram),
                "--dirty-rate", "64M", "--working-set", "16M", "--postcopy", "--downtime-limit", "1", "--max-rounds", "1000",
                "--policy", "cancel", "--max-bandwidth", "16M", "--monitor-stdio", "--json")))
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        children.add(src);
        LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(2500)); // in precopy rounds by now
        try (java.io.Writer cmd = new java.io.OutputStreamWriter(src.getOutputStream(), StandardCharsets.UTF_8)) {
            cmd.write("migrate-start-postcopy\n");
            cmd.flush();
            assertTrue(src.waitFor(60, TimeUnit.SECONDS), "the source did not finish after migrate-start-postcopy");
        }
        String json = new String(src.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, src.exitValue(), json);
        assertTrue(json.contains("\"status\":\"completed\"") && json.contains("\"postcopy\":{"), json);
        assertTrue(json.contains("\"verified\":true"), json);
        String last = exited(dst, 0);
        assertTrue(last.startsWith("RECEIVED verified"), last);
    }
}
