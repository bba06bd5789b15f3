package io.pagewire.perf.e2e;

import io.pagewire.agent.Json;
import io.pagewire.agent.MigrationConfig;
import io.pagewire.agent.MigrationStats;
import io.pagewire.agent.SourceMigration;
import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import tools.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * End-to-end migration benchmark: the cases of the agent issue, each against QEMU 7.2's figures on
 * the same machines. The source (a synthetic guest and the engine) runs in this JVM; the
 * destination runs in one long-lived child JVM ({@link MigrationBenchDestination}) that receives
 * one migration after another, as a QEMU destination process would. Both JVMs are warmed up with a
 * small migration first. Medians of {@code --runs}.
 * <pre>
 *   MigrationBench [--uri tcp://127.0.0.1:0] [--runs 3] [--cases a,b,...] [--warm-memory 12g] [--out DIR] [--dst-exec CMD]
 *                  [--dst-backing anonymous|memfd]
 * </pre>
 * {@code --dst-exec} prefixes the destination JVM's command line, e.g. {@code 'ip netns exec pw-dst'} to
 * run it across the shaped link of {@code scripts/slow-link.sh} (the {@code slow-link-*} cases, which
 * only run when named).
 * {@code --warm-memory} touches and frees that much memory first: inside a VM the first touch of
 * guest memory the hypervisor has not backed yet costs ~9 us per 4 KiB page, whatever the program.
 */
public final class MigrationBench {
    private MigrationBench() {
    }

    private record Case(String name, String qemu, String target, long ram, double zero, boolean writeZeros, SyntheticGuest.Config guest,
                        String populate, MigrationConfig config) {
        boolean postcopy() {
            return config.postcopy();
        }
    }

    private static final long GIB = 1L << 30;
    private static final long MIB = 1L << 20;

    private static List<Case> cases() {
        SyntheticGuest.Config idle = new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.IDLE, 0, 1);
        return List.of(
                new Case("never-written-4g", "126 ms (multifd 2), 145 ms (1 channel)", "<= 30 ms", 4 * GIB, 1.0, false, idle, "hinted",
                        new MigrationConfig()),
                new Case("zeroes-4g", "253 ms", "<= 160 ms", 4 * GIB, 1.0, true, idle, "hinted", new MigrationConfig()),
                new Case("nonzero-2g-prepopulated", "487 ms (multifd 2), 684 ms (1 channel)", "<= 450 ms", 2 * GIB, 0.0, false, idle, "before",
                        new MigrationConfig()),
                new Case("nonzero-2g-not-prepopulated", "5.5 s", "<= 1 s", 2 * GIB, 0.0, false, idle, "hinted", new MigrationConfig()),
                new Case("dirty-256m-random-512m", "total 723 ms, downtime 244 ms", "total <= 723 ms, downtime <= 100 ms", 2 * GIB, 0.0, false,
                        new SyntheticGuest.Config(1, 256 * MIB, SyntheticGuest.Pattern.RANDOM, 512 * MIB, 1), "hinted",
                        new MigrationConfig().downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(300))),
                new Case("faster-than-link", "never converges (cancelled after 20 s)", "throttle converges", 2 * GIB, 0.0, false,
                        new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.SEQUENTIAL, 512 * MIB, 1), "hinted",
                        new MigrationConfig().downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(300)).policy(MigrationConfig.Policy.THROTTLE)),
                new Case("postcopy-at-once-256m-random-512m", "total 1.32 s, 52 requests, blocktime 165 ms",
                        "total and blocktime <= half of QEMU's", 2 * GIB, 0.0, false,
                        new SyntheticGuest.Config(1, 256 * MIB, SyntheticGuest.Pattern.RANDOM, 512 * MIB, 1), "hinted",
                        new MigrationConfig().postcopy(true).postcopyAfterRounds(0)),
                new Case("postcopy-fast-writer", "total 3.5 s, 43,898 requests, blocktime 620 ms", "blocktime <= half of QEMU's",
                        2 * GIB, 0.0, false, new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.RANDOM, 2 * GIB, 1), "hinted",
                        new MigrationConfig().postcopy(true).maxRounds(3).downtimeLimitNs(TimeUnit.MILLISECONDS.toNanos(300))),
                // Fault latency on the 1 Gbit/s link (issue 5): the push saturates the link while a reader faults
                // ~1000 pages/s at random; the "idle" variant caps the push at 4 MiB/s (3 % of the link).
                new Case("slow-link-postcopy-saturated", "preempt: 570 us p99 (10.7 ms without), 10 Gbit/s", "p99 <= 2x idle p99",
                        512 * MIB, 0.0, false, new SyntheticGuest.Config(1, 4 * MIB, SyntheticGuest.Pattern.RANDOM, 512 * MIB, 1), "hinted",
                        new MigrationConfig().postcopy(true).postcopyAfterRounds(0)),
                new Case("slow-link-postcopy-idle", "", "baseline", 32 * MIB, 0.0, false,
                        new SyntheticGuest.Config(1, MIB, SyntheticGuest.Pattern.RANDOM, 32 * MIB, 1), "hinted",
                        new MigrationConfig().postcopy(true).postcopyAfterRounds(0).maxBandwidthBytesPerSec(4 * MIB)));
    }

    public static void main(String[] args) throws Exception {
        String uri = "tcp://127.0.0.1:0";
        int runs = 3;
        List<String> only = null;
        long warm = 0;
        String dstExec = "";
        String dstBacking = "anonymous";
        Path out = Path.of("perf", "target", "reports");
        for (int i = 0; i < args.length; i += 2) {
            String v = i + 1 < args.length ? args[i + 1] : null;
            switch (args[i]) {
                case "--uri" -> uri = v;
                case "--runs" -> runs = Integer.parseInt(v);
                case "--cases" -> only = Arrays.asList(v.split(","));
                case "--warm-memory" -> warm = TransportBench.parseSize(v);
                case "--out" -> out = Path.of(v);
                case "--dst-exec" -> dstExec = v;
                case "--dst-backing" -> dstBacking = v;
                default -> throw new IllegalArgumentException("unknown argument " + args[i]
                        + "; usage: MigrationBench [--uri URI] [--runs 3] [--cases a,b] [--warm-memory 12g] [--out DIR] [--dst-exec CMD]"
                        + " [--dst-backing anonymous|memfd]");
            }
        }
        Files.createDirectories(out);
        if (warm > 0) {
            warmMemory(warm);
        }
        List<Case> selected = new ArrayList<>();
        for (Case c : cases()) {
            if (only == null ? !c.name.startsWith("slow-link-") : only.contains(c.name)) {
                selected.add(c);
            }
        }
        Map<String, List<MigrationStats>> results = new LinkedHashMap<>();
        if (!dstBacking.equals("anonymous") && !dstBacking.equals("memfd")) {
            throw new IllegalArgumentException("--dst-backing " + dstBacking + " is not one of anonymous, memfd");
        }
        try (Destination dst = new Destination(dstExec, dstBacking)) {
            // Warm-up: both JVMs run a small migration before anything is measured.
            for (int i = 0; i < 3; i++) {
                run(dst, uri, new Case("warm-up", "", "", 64 * MIB, 0.3, false,
                        new SyntheticGuest.Config(1, 16 * MIB, SyntheticGuest.Pattern.RANDOM, 16 * MIB, 1), "hinted", new MigrationConfig()));
            }
            for (Case c : selected) {
                List<MigrationStats> rs = new ArrayList<>();
                for (int r = 0; r < runs; r++) {
                    MigrationStats s = run(dst, uri, c);
                    System.out.printf(Locale.ROOT, "%-30s run %d: %s, total %d ms, setup %d ms, downtime %s ms, transferred %d MiB, rounds %d,"
                                    + " throttle %d%%%n", c.name, r + 1, s.status().qemuName(), s.totalTimeMs(), s.setupTimeMs(),
                            s.downtimeUs() < 0 ? "-" : String.format(Locale.ROOT, "%.1f", s.downtimeUs() / 1000.0), s.transferred() >> 20, s.rounds(),
                            s.throttlePercent());
                    rs.add(s);
                    ObjectNode line = Json.object().put("case", c.name);
                    line.setAll(s.toJson());
                    Files.writeString(out.resolve("migration-bench-runs.jsonl"), Json.write(line) + "\n",
                            StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
                }
                results.put(c.name, rs);
            }
        }
        StringBuilder md = new StringBuilder();
        String stamp = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        md.append("# Migration benchmark ").append(stamp).append("\n\n");
        md.append(String.format(Locale.ROOT, "URI `%s`; medians of %d runs; %d cores; memory warmed: %s; destination RAM: %s.%n%n", uri, runs,
                Runtime.getRuntime().availableProcessors(), warm > 0 ? (warm >> 30) + " GiB" : "no", dstBacking));
        md.append("| case | QEMU 7.2 here | target | total ms | setup ms | downtime ms | transferred MiB | rounds | status |\n");
        md.append("|---|---|---|---|---|---|---|---|---|\n");
        for (Case c : selected) {
            List<MigrationStats> rs = results.get(c.name);
            MigrationStats med = rs.stream().sorted(Comparator.comparingLong(MigrationStats::totalTimeMs)).toList().get(rs.size() / 2);
            long[] downs = rs.stream().mapToLong(MigrationStats::downtimeUs).sorted().toArray();
            md.append(String.format(Locale.ROOT, "| %s | %s | %s | %d | %d | %.1f | %d | %d | %s |%n", c.name, c.qemu, c.target, med.totalTimeMs(),
                    med.setupTimeMs(), downs[downs.length / 2] / 1000.0, med.transferred() >> 20, med.rounds(), med.status().qemuName()
                            + (med.throttlePercent() > 0 ? ", throttle " + med.throttlePercent() + "%" : "")));
        }
        System.out.println();
        System.out.println(md);
        Path report = out.resolve("migration-bench-" + stamp + ".md");
        Files.writeString(report, md.toString(), StandardCharsets.UTF_8);
        System.out.println("report: " + report);
        System.exit(0);
    }

    private static MigrationStats run(Destination dst, String listenUri, Case c) throws IOException {
        String target = dst.start(listenUri, c.ram, c.populate, c.postcopy() ? c.guest : null);
        try (GuestImage image = GuestImage.create(c.ram, c.zero, 0, 1, c.writeZeros);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                     c.guest, p -> true)) {
            guest.start();
            SourceMigration m = new SourceMigration(image.ram(), guest, image.balloons(), c.config.verify(true));
            MigrationStats s = m.run(target);
            String verdict = dst.result();
            if (m.postcopyStats() != null) {
                System.out.println("  postcopy at the destination: " + m.postcopyStats());
                Files.writeString(Path.of("perf", "target", "reports", "migration-bench-postcopy.jsonl"),
                        Json.write(Json.object().put("case", c.name).put("total-time", s.totalTimeMs()).put("downtime", s.downtimeMs())
                                .set("destination", m.postcopyStatsJson())) + "\n", StandardCharsets.UTF_8,
                        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
            }
            if (s.status() != MigrationStats.Status.COMPLETED || !Boolean.TRUE.equals(m.verified())) {
                throw new IllegalStateException(c.name + ": migration " + s.status().qemuName() + ", verification " + m.verification() + ", destination "
                        + verdict + "\n" + s.infoMigrate());
            }
            return s;
        }
    }

    /** Touches {@code bytes} of anonymous memory and frees it, so later allocations get memory the hypervisor has backed. */
    private static void warmMemory(long bytes) {
        long t0 = System.nanoTime();
        try (GuestRam ram = GuestRam.create()) {
            var r = ram.open(RegionSpec.anonymous("warm", bytes).hugePages(true));
            r.populate(0, r.pageCount());
        }
        System.out.printf(Locale.ROOT, "warmed %d GiB of memory in %d ms%n", bytes >> 30, (System.nanoTime() - t0) / 1_000_000);
    }

    /** The long-lived destination JVM. */
    private static final class Destination implements AutoCloseable {
        private final Process process;
        private final PrintWriter in;
        private final BufferedReader out;

        Destination(String exec, String backing) throws IOException {
            List<String> jvm = new ArrayList<>();
            if (!exec.isBlank()) {
                jvm.addAll(Arrays.asList(exec.strip().split("\\s+")));
            }
            jvm.add(ProcessHandle.current().info().command().orElse("java"));
            for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                if (a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("-XX:")) {
                    jvm.add(a);
                }
            }
            jvm.addAll(List.of("-Dpagewire.bench.backing=" + backing, "-cp", System.getProperty("java.class.path"),
                    MigrationBenchDestination.class.getName()));
            process = new ProcessBuilder(jvm).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            in = new PrintWriter(process.getOutputStream(), true, StandardCharsets.UTF_8);
            out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        }

        String start(String uri, long ram, String populate, SyntheticGuest.Config postcopyGuest) throws IOException {
            in.println("receive " + uri + " " + ram + " " + populate + (postcopyGuest == null ? "" : " postcopy " + postcopyGuest.vcpus() + " "
                    + postcopyGuest.pattern() + " " + postcopyGuest.workingSetBytes() + " " + postcopyGuest.dirtyRateBytesPerSec()));
            return expect("LISTENING ");
        }

        String result() throws IOException {
            return expect("RESULT ");
        }

        private String expect(String prefix) throws IOException {
            String line;
            while ((line = out.readLine()) != null) {
                if (line.startsWith(prefix)) {
                    return line.substring(prefix.length());
                }
            }
            throw new IOException("the destination JVM ended (exit " + (process.isAlive() ? "-" : process.exitValue()) + ")");
        }

        @Override
        public void close() throws InterruptedException {
            in.println("exit");
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly();
            }
        }
    }
}
