package io.pagewire.perf.e2e;

import io.pagewire.agent.Json;
import io.pagewire.agent.MigrationConfig;
import io.pagewire.agent.MigrationStats;
import io.pagewire.agent.SourceMigration;
import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.perf.BenchCli;
import io.pagewire.perf.report.HtmlReport;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.PeerText;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
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
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * End-to-end migration benchmark: the cases of the agent issue, each against QEMU 7.2's figures on
 * the same machines. The source (a synthetic guest and the engine) runs in this JVM; the
 * destination runs in one long-lived child JVM ({@link MigrationBenchDestination}) that receives
 * one migration after another, as a QEMU destination process would. Both JVMs are warmed up with a
 * small migration first. Medians of {@code --runs}.
 * <pre>
 *   MigrationBench [--uri tcp://127.0.0.1:0] [--runs 3] [--cases a,b,...] [--warm-memory 12g] [--out DIR] [--dst-exec CMD]
 *                  [--dst-backing anonymous|memfd] [--dst-populate hinted|all|before|none]
 * </pre>
 * {@code --dst-exec} prefixes the destination JVM's command line, e.g. {@code 'ip netns exec pw-dst'} to
 * run it across the shaped link of {@code scripts/slow-link.sh} (the {@code slow-link-*} cases, which
 * only run when named).
 * {@code --warm-memory} touches and frees that much memory first: inside a VM the first touch of
 * guest memory the hypervisor has not backed yet costs ~9 us per 4 KiB page, whatever the program.
 * <p>Two hosts: {@code MigrationBench --serve [--control 0.0.0.0:5301]} on the destination host receives in its
 * own JVM what {@code MigrationBench --to dsthost:5301 [--uri tcp://dsthost:4444]} sends, the same cases and
 * commands over a TCP control connection instead of a child's stdin.
 */
@Command(name = "MigrationBench", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Whole migrations between two JVMs on the cases docs/benchmarks.md reports, with QEMU's figures beside them.")
public final class MigrationBench implements Callable<Integer> {
    MigrationBench() {
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
                // The push alone: postcopy at once with a destination guest that touches nothing (no faults).
                new Case("postcopy-at-once-push-only", "", "the push's throughput", 2 * GIB, 0.0, false,
                        new SyntheticGuest.Config(1, 0, SyntheticGuest.Pattern.IDLE, 0, 1), "hinted",
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

    @Option(names = "--uri", defaultValue = "tcp://127.0.0.1:0", paramLabel = "LISTEN_URI", description = "destination listen URI (default ${DEFAULT-VALUE})")
    String uri;
    @Option(names = "--runs", defaultValue = "3", paramLabel = "N", description = "runs per case; the report shows medians (default ${DEFAULT-VALUE})")
    int runs;
    @Option(names = "--cases", split = ",", paramLabel = "NAME", description = "cases to run (default: all but slow-link-*); one of: ${COMPLETION-CANDIDATES}",
            completionCandidates = CaseNames.class)
    List<String> only;
    @Option(names = "--warm-memory", defaultValue = "0", paramLabel = "SIZE",
            description = "touch and free this much memory first, so the hypervisor has backed it (default ${DEFAULT-VALUE})")
    long warm;
    @Option(names = "--out", defaultValue = "perf/target/reports", paramLabel = "DIR", description = "report directory (default ${DEFAULT-VALUE})")
    Path out;
    @Option(names = "--dst-exec", defaultValue = "", paramLabel = "CMD", description = "prefix for the destination JVM, e.g. 'ip netns exec pw-dst'")
    String dstExec;
    @Option(names = "--dst-backing", defaultValue = "anonymous", paramLabel = "B", description = "destination RAM: anonymous or memfd (default ${DEFAULT-VALUE})")
    String dstBacking;

    @Option(names = "--src-backing", defaultValue = "memfd", paramLabel = "B",
            description = {"source guest RAM: memfd, or anonymous with transparent huge pages advised (MADV_HUGEPAGE),",
                    "as QEMU backs its guest RAM (default ${DEFAULT-VALUE})"})
    String srcBacking;

    @Option(names = "--dst-populate", paramLabel = "P",
            description = "destination RAM population for every case: hinted, all, before (pre-populated, as QEMU's -mem-prealloc) or none"
                    + " (default: each case's own)")
    String dstPopulate;
    @Option(names = "--serve", description = {"two hosts, destination side: accept MigrationBench --to control connections on --control and",
            "receive their migrations in this JVM, one after another, until stopped (an unauthenticated benchmarking port, as iperf3 -s)"})
    boolean serve;
    @Option(names = "--control", defaultValue = "0.0.0.0:5301", paramLabel = "HOST:PORT",
            description = "with --serve: the control port's address (default ${DEFAULT-VALUE}; port 0 picks one, printed as SERVING)")
    String control;
    @Option(names = "--max-ram", defaultValue = "16g", paramLabel = "SIZE",
            description = "with --serve: the most RAM one migration may ask this host for (default ${DEFAULT-VALUE})")
    long maxRam;
    @Option(names = "--to", paramLabel = "HOST:PORT", description = {"two hosts, source side: the control address of a 'MigrationBench --serve';",
            "the destination listens on --uri there (default: tcp://HOST:0)"})
    String to;

    /** The case names, for --help and for checking --cases. */
    static final class CaseNames implements Iterable<String> {
        @Override
        public java.util.Iterator<String> iterator() {
            return cases().stream().map(c -> c.name).iterator();
        }
    }

    public static void main(String[] args) {
        BenchCli.main(new MigrationBench(), args);
    }

    @Override
    public Integer call() throws Exception {
        if (!srcBacking.equals("anonymous") && !srcBacking.equals("memfd")) {
            throw new CommandLine.ParameterException(new CommandLine(this), "--src-backing " + srcBacking + " is not one of anonymous, memfd");
        }
        if (!dstBacking.equals("anonymous") && !dstBacking.equals("memfd")) {
            throw new CommandLine.ParameterException(new CommandLine(this), "--dst-backing " + dstBacking + " is not one of anonymous, memfd");
        }
        if (dstPopulate != null && !List.of("hinted", "all", "before", "none").contains(dstPopulate)) {
            throw new CommandLine.ParameterException(new CommandLine(this), "--dst-populate " + dstPopulate + " is not one of hinted, all, before, none");
        }
        if (serve) {
            if (to != null) {
                throw new CommandLine.ParameterException(new CommandLine(this), "--serve (the destination host) and --to (the source host) exclude each other");
            }
            return serve(hostPort(control, "--control"), maxRam, dstBacking);
        }
        if (to != null) {
            if (!dstExec.isBlank()) {
                throw new CommandLine.ParameterException(new CommandLine(this), "--dst-exec starts a local destination; --to uses a remote one");
            }
            hostPort(to, "--to");
            if (uri.equals("tcp://127.0.0.1:0")) {
                uri = "tcp://" + to.substring(0, to.lastIndexOf(':')) + ":0";
            }
        }
        if (only != null) {
            List<String> known = cases().stream().map(c -> c.name).toList();
            for (String name : only) {
                if (!known.contains(name)) {
                    throw new CommandLine.ParameterException(new CommandLine(this), "--cases: unknown case '" + name + "'; cases: " + known);
                }
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
        Map<String, Run> lastRuns = new LinkedHashMap<>();
        try (Destination dst = to != null ? Destination.remote(to) : Destination.local(dstExec, dstBacking)) {
            // Warm-up: both JVMs run a small migration before anything is measured.
            for (int i = 0; i < 3; i++) {
                run(dst, uri, new Case("warm-up", "", "", 64 * MIB, 0.3, false,
                        new SyntheticGuest.Config(1, 16 * MIB, SyntheticGuest.Pattern.RANDOM, 16 * MIB, 1), "hinted", new MigrationConfig()));
            }
            for (Case c0 : selected) {
                Case c = dstPopulate == null ? c0 : new Case(c0.name, c0.qemu, c0.target, c0.ram, c0.zero, c0.writeZeros, c0.guest, dstPopulate,
                        c0.config);
                List<MigrationStats> rs = new ArrayList<>();
                for (int r = 0; r < runs; r++) {
                    Run measured = measure(dst, uri, c);
                    lastRuns.put(c.name, measured);
                    MigrationStats s = measured.stats();
                    System.out.printf(Locale.ROOT, "%-30s run %d: %s, total %d ms, setup %d ms, downtime %s ms, transferred %d MiB, rounds %d,"
                                    + " throttle %d%%%n", c.name, r + 1, s.status().qemuName(), s.totalTimeMs(), s.setupTimeMs(),
                            s.downtimeUs() < 0 ? "-" : String.format(Locale.ROOT, "%.1f", s.downtimeUs() / 1000.0), s.transferred() >> 20, s.rounds(),
                            s.throttlePercent());
                    rs.add(s);
                    Files.writeString(out.resolve("migration-bench-runs.jsonl"), Json.write(Json.object().put("case", c.name).setAll(s.toJson())) + "\n",
                            StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
                }
                results.put(c.name, rs);
            }
        }
        StringBuilder md = new StringBuilder();
        String stamp = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        md.append("# Migration benchmark ").append(stamp).append("\n\n");
        md.append(String.format(Locale.ROOT, "URI `%s`; medians of %d runs; %d cores; memory warmed: %s; source RAM: %s; destination RAM: %s%s.%n%n",
                uri, runs, Runtime.getRuntime().availableProcessors(), warm > 0 ? (warm >> 30) + " GiB" : "no",
                srcBacking.equals("memfd") ? "memfd" : "anonymous, transparent huge pages advised",
                to != null ? "that of the MigrationBench --serve at " + to : dstBacking,
                dstPopulate == null ? "" : ", populated " + dstPopulate));
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
        Path html = htmlReport(selected, results, lastRuns).write(out.resolve("migration-bench-" + stamp));
        System.out.println("HTML report: " + html + " (raw results beside it as .json)");
        return 0;
    }

    /** The HTML report: totals and downtime per case, each case's timeline (its last run), postcopy fault latency. */
    private HtmlReport htmlReport(List<Case> selected, Map<String, List<MigrationStats>> results, Map<String, Run> lastRuns) {
        HtmlReport r = new HtmlReport("pagewire migration benchmark");
        r.fact("URI", uri);
        r.fact("runs per case", Integer.toString(runs));
        r.fact("destination", to != null ? "MigrationBench --serve at " + to + " (its own --dst-backing)"
                : (dstExec.isBlank() ? "a JVM on this host" : "a JVM started through '" + dstExec + "'") + ", RAM " + dstBacking);
        r.fact("memory warmed", warm > 0 ? (warm >> 30) + " GiB" : "no");
        List<String> names = selected.stream().map(c -> c.name).toList();
        var raw = r.results().putArray("cases");
        double[] total = new double[names.size()];
        double[] downtime = new double[names.size()];
        for (int i = 0; i < selected.size(); i++) {
            Case c = selected.get(i);
            List<MigrationStats> rs = results.get(c.name);
            total[i] = rs.stream().mapToLong(MigrationStats::totalTimeMs).sorted().toArray()[rs.size() / 2];
            downtime[i] = rs.stream().mapToLong(MigrationStats::downtimeUs).sorted().toArray()[rs.size() / 2] / 1000.0;
            var o = raw.addObject().put("case", c.name).put("qemu", c.qemu).put("target", c.target);
            var runsJson = o.putArray("runs");
            rs.forEach(x -> runsJson.add(x.toJson()));
            Run last = lastRuns.get(c.name);
            if (last.postcopy() != null) {
                o.set("postcopy", last.postcopy());
            }
        }
        r.chart("Total time per case", "Median of the runs, milliseconds (QEMU's figure on this machine is in the table of the .md report).",
                HtmlReport.bars("ms", names, Map.of("total (median)", total)));
        r.chart("Downtime per case", "Median downtime, milliseconds: the guest paused on the source until the destination acknowledged every page.",
                HtmlReport.bars("ms", names, Map.of("downtime (median)", downtime)));
        for (Case c : selected) {
            Run last = lastRuns.get(c.name);
            List<double[]> points;
            synchronized (last.timeline()) {
                points = List.copyOf(last.timeline());
            }
            Map<String, List<double[]>> series = new LinkedHashMap<>();
            series.put("dirty at last sync (MiB)", points.stream().map(p -> new double[]{p[0], p[1]}).toList());
            series.put("page data sent (MiB)", points.stream().map(p -> new double[]{p[0], p[2]}).toList());
            series.put("throttle (%)", points.stream().map(p -> new double[]{p[0], p[3]}).toList());
            series.put("rounds", points.stream().map(p -> new double[]{p[0], p[4]}).toList());
            MigrationStats s = last.stats();
            r.chart("Timeline: " + c.name, String.format(Locale.ROOT, "The last run, sampled every %d ms: total %d ms, %d rounds, downtime %.1f ms at the end.",
                    TimeUnit.NANOSECONDS.toMillis(SAMPLE_NS), s.totalTimeMs(), s.rounds(), s.downtimeUs() / 1000.0),
                    HtmlReport.timeline("MiB", series, "rounds, throttle %", java.util.Set.of("throttle (%)", "rounds")));
        }
        Map<String, double[]> faults = new LinkedHashMap<>();
        List<String> postcopyCases = new ArrayList<>();
        for (Case c : selected) {
            var pc = lastRuns.get(c.name).postcopy();
            if (pc != null && pc.has("fault-latency-us")) {
                postcopyCases.add(c.name);
            }
        }
        for (String p : List.of("p50", "p90", "p99", "p99.9", "max")) {
            faults.put(p, postcopyCases.stream().mapToDouble(n -> lastRuns.get(n).postcopy().get("fault-latency-us").get(p).asDouble()).toArray());
        }
        if (!postcopyCases.isEmpty()) {
            r.chart("Postcopy fault latency", "Destination: a vCPU's fault to its page mapped, microseconds (the last run of each postcopy case).",
                    HtmlReport.bars("microseconds", postcopyCases, faults));
        }
        return r;
    }

    /** One measured migration: its statistics, its timeline, the destination's postcopy figures (or null). */
    record Run(MigrationStats stats, List<double[]> timeline, tools.jackson.databind.node.ObjectNode postcopy) {
    }

    /** Timeline points are taken this often while a migration runs; at most {@link #MAX_POINTS} per run (bounded). */
    private static final long SAMPLE_NS = TimeUnit.MILLISECONDS.toNanos(20);
    private static final int MAX_POINTS = 50_000;

    /**
     * Samples {@code s} until {@code done}: [seconds, dirty MiB at last sync, MiB of page data sent, throttle %, rounds].
     */
    private static Thread sampler(MigrationStats s, List<double[]> into, java.util.concurrent.atomic.AtomicBoolean done) {
        long t0 = System.nanoTime();
        return Thread.ofPlatform().daemon().name("migration-bench-timeline").start(() -> {
            while (!done.get() && into.size() < MAX_POINTS) {
                synchronized (into) {
                    into.add(new double[]{(System.nanoTime() - t0) / 1e9, s.remainingBytes() / (double) MIB, s.normal() * 4096.0 / MIB,
                            s.throttlePercent(), s.rounds()});
                }
                java.util.concurrent.locks.LockSupport.parkNanos(SAMPLE_NS); // a sampling period, not a wait for a condition
            }
        });
    }

    private MigrationStats run(Destination dst, String listenUri, Case c) throws IOException {
        return measure(dst, listenUri, c).stats();
    }

    private Run measure(Destination dst, String listenUri, Case c) throws IOException {
        String target = dst.start(listenUri, c.ram, c.populate, c.postcopy() ? c.guest : null);
        RegionSpec source = srcBacking.equals("memfd") ? RegionSpec.memfd("pc.ram", c.ram) : RegionSpec.anonymous("pc.ram", c.ram).hugePages(true);
        try (GuestImage image = GuestImage.create(source, c.zero, 0, 1, c.writeZeros);
             SyntheticGuest guest = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                     c.guest, p -> true)) {
            guest.start();
            SourceMigration m = new SourceMigration(image.ram(), guest, image.balloons(), c.config.verify(true));
            List<double[]> timeline = new ArrayList<>();
            java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
            Thread sampling = sampler(m.stats(), timeline, done);
            MigrationStats s;
            try {
                s = m.run(target);
            } finally {
                done.set(true);
                sampling.interrupt();
            }
            try {
                sampling.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while ending the timeline sampler", e);
            }
            String verdict = dst.result();
            if (m.postcopyStats() != null) {
                System.out.println("  postcopy at the destination: " + m.postcopyStats());
                Files.writeString(Path.of("perf", "target", "reports", "migration-bench-postcopy.jsonl"),
                        Json.write(Json.object().put("case", c.name).put("total-time", s.totalTimeMs()).put("downtime", s.downtimeMs())
                                .set("destination", m.postcopyStatsNode())) + "\n", StandardCharsets.UTF_8,
                        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
            }
            if (s.status() != MigrationStats.Status.COMPLETED || !Boolean.TRUE.equals(m.verified())) {
                throw new IllegalStateException(c.name + ": migration " + s.status().qemuName() + ", verification " + m.verification() + ", destination "
                        + verdict + "\n" + s.infoMigrate());
            }
            return new Run(s, timeline, m.postcopyStatsNode());
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

    /** @return {@code text} as an address, or a usage error naming {@code option} */
    private InetSocketAddress hostPort(String text, String option) {
        int colon = text.lastIndexOf(':');
        try {
            if (colon <= 0) {
                throw new IllegalArgumentException("no port");
            }
            int port = Integer.parseInt(text.substring(colon + 1));
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("port out of range 0..65535");
            }
            return new InetSocketAddress(text.substring(0, colon).replaceAll("^\\[|\\]$", ""), port);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(new CommandLine(this), option + " '" + text + "' is not HOST:PORT (" + e.getMessage() + ")");
        }
    }

    /**
     * {@code --serve}: the destination host of a two-host run. Control connections come one after another;
     * each sends {@link MigrationBenchDestination}'s commands, and its migrations are received in this JVM.
     */
    private static int serve(InetSocketAddress address, long maxRam, String backing) throws Exception {
        try (ServerSocket server = new ServerSocket()) {
            server.bind(address);
            System.out.println("SERVING " + server.getInetAddress().getHostAddress() + ":" + server.getLocalPort());
            System.out.flush();
            while (true) {
                try (Socket s = server.accept()) {
                    String peer = s.getRemoteSocketAddress().toString();
                    System.err.println("MigrationBench source " + peer + " connected");
                    PrintStream out = new PrintStream(s.getOutputStream(), true, StandardCharsets.UTF_8);
                    try {
                        MigrationBenchDestination.serve(new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8)),
                                out, maxRam, backing);
                    } catch (IOException | RuntimeException e) { // this source's session ends; the next one is served
                        System.err.println("MigrationBench source " + peer + ": " + e);
                        out.println("ERROR " + PeerText.escape(String.valueOf(e.getMessage())));
                    }
                    System.err.println("MigrationBench source " + peer + " done");
                }
            }
        }
    }

    /** The long-lived destination: a child JVM on this host, or a {@code --serve} on another. */
    private static final class Destination implements AutoCloseable {
        private final PrintWriter in;
        private final BufferedReader out;
        private final String what;
        private final Process process; // null: remote
        private final Socket socket; // null: local

        private Destination(PrintWriter in, BufferedReader out, String what, Process process, Socket socket) {
            this.in = in;
            this.out = out;
            this.what = what;
            this.process = process;
            this.socket = socket;
        }

        static Destination local(String exec, String backing) throws IOException {
            List<String> jvm = new ArrayList<>();
            if (!exec.isBlank()) {
                jvm.addAll(Arrays.asList(exec.strip().split("\\s+")));
            }
            jvm.add(ProcessHandle.current().info().command().orElse("java"));
            for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                if (a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("-XX:") || a.startsWith("-Dpagewire.")) {
                    jvm.add(a);
                }
            }
            jvm.addAll(List.of("-Dpagewire.bench.backing=" + backing, "-cp", System.getProperty("java.class.path"),
                    MigrationBenchDestination.class.getName()));
            Process process = new ProcessBuilder(jvm).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            return new Destination(new PrintWriter(process.getOutputStream(), true, StandardCharsets.UTF_8),
                    new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8)), "the destination JVM", process, null);
        }

        static Destination remote(String hostPort) throws IOException {
            int colon = hostPort.lastIndexOf(':');
            Socket socket = new Socket();
            try {
                socket.connect(new InetSocketAddress(hostPort.substring(0, colon), Integer.parseInt(hostPort.substring(colon + 1))),
                        (int) TimeUnit.SECONDS.toMillis(10));
            } catch (IOException e) {
                socket.close();
                throw new IOException("no MigrationBench --serve answered at " + hostPort + ": " + e.getMessage(), e);
            }
            return new Destination(new PrintWriter(socket.getOutputStream(), true, StandardCharsets.UTF_8),
                    new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8)),
                    "MigrationBench --serve at " + hostPort, null, socket);
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
                if (line.startsWith("ERROR ")) {
                    throw new IOException(what + " refused: " + PeerText.escape(line.substring("ERROR ".length())));
                }
            }
            throw new IOException(what + " ended" + (process == null ? " the control connection" : " (exit " + (process.isAlive() ? "-" : process.exitValue()) + ")"));
        }

        @Override
        public void close() throws InterruptedException, IOException {
            in.println("exit");
            if (socket != null) {
                socket.close();
            } else if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly();
            }
        }
    }
}
