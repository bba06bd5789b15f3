package io.pagewire.agent.cli;

import io.pagewire.agent.Json;
import io.pagewire.agent.MigrationStats;
import io.pagewire.agent.SourceMigration;
import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.transport.spi.PeerText;

import tools.jackson.databind.node.ObjectNode;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

/** Runs the source side for {@code demo} and {@code send}: guest image, synthetic guest, migration, report. */
final class SourceRunner {
    private SourceRunner() {
    }

    /** @return the process exit code ({@link ExitCode}): 0 when completed (and verified, when asked) */
    static int run(PrintWriter out, PrintWriter err, GuestOptions g, MigrateOptions m, String uri) {
        return run(out, err, g, m, uri, new Phases());
    }

    /**
     * @param phases the command's phases so far; this adds populate (the guest image and its
     *               vCPUs started) and the migration's parts, and reports them
     * @return the process exit code ({@link ExitCode}): 0 when completed (and verified, when asked)
     */
    static int run(PrintWriter out, PrintWriter err, GuestOptions g, MigrateOptions m, String uri, Phases phases) {
        SyntheticGuest.Pattern pattern = g.pattern();
        warmUp(m.jitWarmUp, err, phases);
        try (GuestImage image = GuestImage.create(g.regionSpec(), g.zeroFraction, g.balloonFraction, 1, false);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()),
                     image.region().pageSize(), new SyntheticGuest.Config(g.vcpus, g.dirtyRate, pattern, g.workingSet, 7),
                     page -> !image.balloon().isBallooned(page))) {
            guest.start();
            phases.mark("populate");
            SourceMigration migration = new SourceMigration(image.ram(), guest, image.balloons(), m.config());
            return migrate(out, err, m, migration, uri, phases);
        }
    }

    /**
     * Runs {@code migration} to {@code uri} with the monitor commands, progress line and periodic statistics
     * {@code m} asks for, then reports it (text, or with {@code --json} one JSON document on {@code out}).
     *
     * @param phases the command's phases so far (the migration's parts are added and reported), or null
     * @return the process exit code ({@link ExitCode})
     */
    static int migrate(PrintWriter out, PrintWriter err, MigrateOptions m, SourceMigration migration, String uri, Phases phases) {
        // With --json, standard output carries the one JSON document and nothing else.
        PrintWriter text = m.json ? err : out;
        if (m.monitorStdio) {
            Thread.ofPlatform().daemon().name("pagewire-commands").start(() -> commands(migration, text));
        }
        Thread progress = null;
        if (!m.json && System.console() != null) {
            progress = Thread.ofPlatform().daemon().name("pagewire-progress").start(() -> progress(migration.stats()));
        }
        MigrationStats stats;
        try (StatsTicker ticker = StatsTicker.start(migration.stats(), m.statsInterval, m.statsFile, err)) {
            stats = migration.run(uri);
        }
        if (phases != null) {
            phases.migration(stats);
        }
        if (progress != null) {
            progress.interrupt();
            System.err.print("\r\033[K");
        }
        Boolean verified = migration.verified();
        if (m.json) {
            ObjectNode doc = stats.toJson();
            if (migration.postcopyStatsNode() != null) {
                doc.set("postcopy", migration.postcopyStatsNode());
            }
            if (verified != null) { // absent when verification was not asked
                doc.put("verified", verified.booleanValue());
            }
            if (migration.verification() != null) {
                doc.put("verification", migration.verification());
            }
            if (phases != null) {
                doc.set("phases", phases.toJson());
            }
            out.println(Json.write(doc));
        } else {
            out.println(stats.infoMigrate());
            if (migration.postcopyStats() != null) {
                out.println("postcopy at the destination: " + migration.postcopyStats());
            }
            out.println("verified: " + (verified == null ? "not checked" : verified + (verified ? "" : " (" + PeerText.escape(migration.verification()) + ")")));
            if (phases != null) {
                out.println(phases.line());
            }
        }
        out.flush();
        return ExitCode.of(stats, verified).code();
    }

    /** Monitor commands, one per line on standard input (QEMU's names); ends at end of input. */
    static final String COMMANDS = "migrate-start-postcopy, migrate-resume [URI], migrate-cancel, info";

    private static void commands(SourceMigration migration, PrintWriter out) {
        java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
        try {
            for (String line; (line = in.readLine()) != null; ) {
                String[] w = line.strip().split("\\s+");
                try {
                    switch (w[0]) {
                        case "" -> {
                        }
                        case "migrate-start-postcopy" -> migration.startPostcopy();
                        case "migrate-resume" -> migration.resume(w.length > 1 ? w[1] : null);
                        case "migrate-cancel" -> migration.cancel("cancelled by the migrate-cancel command");
                        case "info" -> {
                            synchronized (out) {
                                out.println(migration.stats().infoMigrate());
                                out.flush();
                            }
                        }
                        default -> System.err.println("pagewire: unknown command '" + w[0] + "'; commands: " + COMMANDS);
                    }
                } catch (IllegalStateException | IllegalArgumentException e) {
                    System.err.println("pagewire: " + w[0] + ": " + PeerText.escape(e.getMessage()));
                }
            }
        } catch (java.io.IOException e) {
            System.err.println("pagewire: reading commands from standard input failed, commands end: " + e.getMessage());
        }
    }

    private static void progress(MigrationStats s) {
        try {
            while (!Thread.currentThread().isInterrupted()) {
                System.err.printf(Locale.ROOT, "\r\033[K%s: round %d, %d MiB sent, %d MiB dirty at last sync, throttle %d%%",
                        s.status().qemuName(), s.rounds(), s.transferred() >> 20, s.remainingBytes() >> 20, s.throttlePercent());
                System.err.flush();
                TimeUnit.MILLISECONDS.sleep(250);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * The JIT warm-up ({@link io.pagewire.agent.JitWarmUp}) of {@code --jit-warm-up SIZE}, as the phase {@code warm-up}
     * when {@code phases} is given. A failed warm-up is reported and the command goes on: the migration then runs cold.
     */
    static void warmUp(long bytes, PrintWriter err, Phases phases) {
        if (bytes < 0 || bytes % 4096 != 0) {
            throw new IllegalArgumentException("--jit-warm-up " + bytes + ": give 0 (none) or a size in whole 4 KiB pages, e.g. 64M");
        }
        if (bytes > 0) {
            try {
                io.pagewire.agent.JitWarmUp.run(bytes);
            } catch (IllegalStateException | io.pagewire.transport.spi.TransportException | io.pagewire.ramtracker.RamTrackerException e) {
                err.println("pagewire: the JIT warm-up failed, the migration runs cold: " + e.getMessage());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted during the JIT warm-up", e);
            }
        }
        if (phases != null) {
            phases.mark("warm-up");
        }
    }
}
