package io.pagewire.perf.aeron;

import io.pagewire.perf.BenchCli;
import io.pagewire.perf.e2e.TransportBench;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The Aeron transport's benchmarks against Aeron itself, in one session on one machine:
 * <ol>
 * <li>Aeron's own {@code io.aeron.samples.EmbeddedExclusiveThroughput}, unmodified, in a child JVM over UDP
 *     loopback: 4 KiB messages with Aeron's recommended throughput settings ({@code aeron-throughput.properties}:
 *     8 KiB MTU, 2 MiB socket buffers and receiver window); 4 KiB messages with the settings pagewire's transport
 *     uses (64 KiB MTU, 16 MiB terms, 2/4 MiB socket buffers); and messages as large as pagewire's frames (15 pages)
 *     with those settings. All in {@code SHARED} threading mode (the default DEDICATED mode runs three spinning
 *     threads on two cores).</li>
 * <li>pagewire's end-to-end {@link TransportBench} (source and destination in two JVMs) for each URI: background-lane
 *     throughput of non-zero pages, urgent round trips with the background lane idle and saturated.</li>
 * <li>Aeron's figure again, so drift from other load on the machine shows.</li>
 * </ol>
 * <pre>
 *   AeronBench [--uri URI]... [--bytes 2g] [--runs 3] [--rtt 2000] [--aeron-runs 2] [--aeron-messages 2000000] [--out DIR]
 * </pre>
 * Aeron publishes no {@code aeron-samples} artifact after 1.46.8; for the Aeron release pagewire uses the sample ships
 * only inside {@code aeron-all}, which the build copies to {@code perf/target/aeron-reference/aeron-all.jar} as a
 * stand-alone tool: that jar is the reference child JVM's whole class path and is on no path of pagewire's (which uses
 * aeron-client, aeron-driver and agrona). {@code -Dpagewire.bench.aeron-jar=PATH} names another copy.
 * Default URIs: {@code aeron:udp?endpoint=127.0.0.1:0} (data digests on) and the same with
 * {@code data-digest=false}. Writes {@code DIR/aeron-bench-*.md} (and TransportBench's histograms).
 */
@Command(name = "AeronBench", mixinStandardHelpOptions = true, sortOptions = false,
        description = "pagewire over Aeron against Aeron's own EmbeddedExclusiveThroughput sample, in one run.")
public final class AeronBench implements Callable<Integer> {
    private AeronBench() {
    }

    private static final Pattern RATE = Pattern.compile("([0-9.e+]+) msgs/sec, ([0-9.e+]+) bytes/sec");
    private static final Pattern RUN = Pattern.compile("run \\d+: [0-9.]+ s, ([0-9.]+) GB/s");
    // TransportBench prints p50 / p90 / p99 / max; the p90 is optional here so older output parses too.
    private static final Pattern IDLE = Pattern.compile("urgent RTT, background idle: +([0-9]+) / (?:[0-9]+ / )?([0-9]+) / ([0-9]+) us");
    private static final Pattern BUSY = Pattern.compile(
            "urgent RTT, background saturated: ([0-9]+) / (?:[0-9]+ / )?([0-9]+) / ([0-9]+) us .* moving ([0-9.]+) GB/s");
    /** Aeron's sample, run by its class name from {@link #aeronReferenceJar()} (pagewire's class path does not hold it). */
    private static final String AERON_SAMPLE = "io.aeron.samples.EmbeddedExclusiveThroughput";

    /** The Aeron settings of pagewire's background stream, as system properties of Aeron's samples. */
    public static final List<String> PAGEWIRE_SETTINGS = List.of("-Daeron.mtu.length=65504", "-Daeron.term.buffer.length=16m",
            "-Daeron.socket.so_sndbuf=2m", "-Daeron.socket.so_rcvbuf=4m", "-Daeron.rcv.initial.window.length=2m",
            "-Daeron.term.buffer.sparse.file=false");
    /** The size of one pagewire page frame (15 pages of 4 KiB, header, digest): the message length of the references. */
    public static final int PAGEWIRE_FRAME_BYTES = 61476;

    /** Aeron settings: its own throughput profile, and the one pagewire's background stream uses. */
    static final Map<String, List<String>> AERON_PROFILES = new LinkedHashMap<>();

    static {
        AERON_PROFILES.put("Aeron throughput profile (mtu 8k, 2m buffers, 2m window)", List.of(
                "-Daeron.mtu.length=8k", "-Daeron.socket.so_sndbuf=2m", "-Daeron.socket.so_rcvbuf=2m",
                "-Daeron.rcv.initial.window.length=2m", "-Daeron.term.buffer.sparse.file=false"));
        List<String> pagewire = PAGEWIRE_SETTINGS;
        AERON_PROFILES.put("pagewire's settings (mtu 65504, term 16m, sndbuf 2m, rcvbuf 4m, window 2m)", pagewire);
        List<String> frames = new ArrayList<>(pagewire);
        frames.add("-Daeron.sample.messageLength=" + PAGEWIRE_FRAME_BYTES);
        AERON_PROFILES.put("pagewire's settings, 61476-byte messages (the size of pagewire's frames)", frames);
    }

    @Option(names = "--uri", paramLabel = "LISTEN_URI",
            description = "aeron: listen URIs to measure (default: aeron:udp?endpoint=127.0.0.1:0 with and without data digests)")
    List<String> uris = new ArrayList<>();
    @Option(names = "--bytes", defaultValue = "2g", paramLabel = "SIZE", description = "pages moved per pagewire run (default ${DEFAULT-VALUE})")
    long bytesValue;
    @Option(names = "--runs", defaultValue = "3", paramLabel = "N", description = "pagewire runs per URI (default ${DEFAULT-VALUE})")
    int runs;
    @Option(names = "--rtt", defaultValue = "2000", paramLabel = "N", description = "urgent round trips per measurement (default ${DEFAULT-VALUE})")
    int rtt;
    @Option(names = "--aeron-runs", defaultValue = "2", paramLabel = "N", description = "runs of Aeron's own sample per profile (default ${DEFAULT-VALUE})")
    int aeronRuns;
    @Option(names = "--aeron-messages", defaultValue = "2000000", paramLabel = "N",
            description = "messages per run of Aeron's sample (default ${DEFAULT-VALUE}: several one-second reports at any plausible rate)")
    long messages;
    @Option(names = "--out", defaultValue = "perf/target/reports", paramLabel = "DIR", description = "report directory (default ${DEFAULT-VALUE})")
    Path out;

    public static void main(String[] args) {
        BenchCli.main(new AeronBench(), args);
    }

    @Override
    public Integer call() throws Exception {
        String bytes = Long.toString(bytesValue);
        if (uris.isEmpty()) {
            uris.add("aeron:udp?endpoint=127.0.0.1:0");
            uris.add("aeron:udp?endpoint=127.0.0.1:0|data-digest=false");
        }
        Files.createDirectories(out);
        String stamp = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));

        Map<String, List<Double>> aeron = new LinkedHashMap<>();
        for (int r = 0; r < aeronRuns; r++) {
            for (Map.Entry<String, List<String>> p : AERON_PROFILES.entrySet()) {
                aeron.computeIfAbsent(p.getKey(), k -> new ArrayList<>()).add(aeronThroughput(p.getValue(), messages));
            }
        }
        Map<String, String> transport = new LinkedHashMap<>();
        Map<String, double[]> figures = new LinkedHashMap<>();
        for (String uri : uris) {
            List<String> lines = transportBench(uri, bytes, runs, rtt, out);
            double best = 0;
            double[] idle = new double[3];
            double[] busy = new double[4];
            List<Double> gbps = new ArrayList<>();
            for (String line : lines) {
                Matcher m = RUN.matcher(line);
                if (m.find()) {
                    gbps.add(Double.parseDouble(m.group(1)));
                    best = Math.max(best, Double.parseDouble(m.group(1)));
                }
                m = IDLE.matcher(line);
                if (m.find()) {
                    for (int k = 0; k < 3; k++) {
                        idle[k] = Double.parseDouble(m.group(k + 1));
                    }
                }
                m = BUSY.matcher(line);
                if (m.find()) {
                    for (int k = 0; k < 4; k++) {
                        busy[k] = Double.parseDouble(m.group(k + 1));
                    }
                }
            }
            figures.put(uri, new double[]{best, idle[0], idle[1], idle[2], busy[0], busy[1], busy[2], busy[3]});
            transport.put(uri, gbps.toString());
        }
        for (Map.Entry<String, List<String>> p : AERON_PROFILES.entrySet()) {
            aeron.get(p.getKey()).add(aeronThroughput(p.getValue(), messages));
        }

        double aeronBest = aeron.values().stream().flatMap(List::stream).mapToDouble(Double::doubleValue).max().orElse(Double.NaN);
        StringBuilder md = new StringBuilder("# Aeron transport benchmark ").append(stamp).append("\n\n");
        md.append(String.format(Locale.ROOT, "%d cores, UDP loopback, 4 KiB pages, %s per pagewire run, %d messages per Aeron run.%n%n",
                Runtime.getRuntime().availableProcessors(), bytes, messages));
        md.append("## Aeron's own EmbeddedExclusiveThroughput (one JVM, one embedded driver, SHARED threading)\n\n");
        md.append("| settings | bytes/s per run (GB/s), last run after pagewire's |\n|---|---|\n");
        for (Map.Entry<String, List<Double>> e : aeron.entrySet()) {
            md.append("| ").append(e.getKey()).append(" | ").append(e.getValue().stream()
                    .map(g -> String.format(Locale.ROOT, "%.2f", g / 1e9)).toList()).append(" |\n");
        }
        md.append("\n## pagewire over Aeron (TransportBench: source and destination JVMs, each with its own drivers)\n\n");
        md.append("| URI | GB/s per run | best | vs Aeron's best (").append(String.format(Locale.ROOT, "%.2f", aeronBest / 1e9))
                .append(" GB/s) | urgent RTT idle p50/p99/max us | saturated p50/p99/max us | saturated GB/s | p99 ratio |\n");
        md.append("|---|---|---|---|---|---|---|---|\n");
        for (Map.Entry<String, double[]> e : figures.entrySet()) {
            double[] f = e.getValue();
            md.append(String.format(Locale.ROOT, "| `%s` | %s | %.2f | %.0f%% | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %.2f | %.2f |%n",
                    e.getKey(), transport.get(e.getKey()), f[0], 100 * f[0] * 1e9 / aeronBest, f[1], f[2], f[3], f[4], f[5], f[6], f[7],
                    f[5] / f[2]));
        }
        System.out.println();
        System.out.println(md);
        Path report = out.resolve("aeron-bench-" + stamp + ".md");
        Files.writeString(report, md.toString(), StandardCharsets.UTF_8);
        System.out.println("report: " + report);
        return 0;
    }

    static List<String> jvmFlags() {
        List<String> flags = new ArrayList<>();
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("-XX:") || a.startsWith("-Xm")
                    || a.startsWith("-Dpagewire")) {
                flags.add(a);
            }
        }
        if (flags.stream().noneMatch(f -> f.contains("jdk.internal.misc"))) {
            flags.add("--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED"); // Agrona 2.x
        }
        return flags;
    }

    /**
     * The jar that holds Aeron's sample: {@code -Dpagewire.bench.aeron-jar}, else {@code aeron-reference/aeron-all.jar}
     * beside the perf jar (or classes directory) this class was loaded from.
     */
    static Path aeronReferenceJar() {
        String given = System.getProperty("pagewire.bench.aeron-jar");
        Path jar;
        if (given != null) {
            jar = Path.of(given);
        } else {
            Path self = Path.of(AeronBench.class.getProtectionDomain().getCodeSource().getLocation().getPath());
            jar = self.toAbsolutePath().getParent().resolve("aeron-reference").resolve("aeron-all.jar");
        }
        if (!Files.isRegularFile(jar)) {
            throw new IllegalStateException("Aeron's sample (" + AERON_SAMPLE + ") is not at " + jar
                    + ": build the perf module with ./mvnw -B -DskipTests package, or name the aeron-all jar of the same Aeron"
                    + " version with -Dpagewire.bench.aeron-jar=PATH");
        }
        return jar;
    }

    /** Runs Aeron's sample in a child JVM; returns its steady-state payload bytes per second (median of its reports). */
    static double aeronThroughput(List<String> settings, long messages) throws IOException, InterruptedException {
        List<String> props = new ArrayList<>();
        props.add("-Daeron.dir=" + Path.of(System.getProperty("java.io.tmpdir"), "pagewire-aeron-bench-" + ProcessHandle.current().pid()));
        props.add("-Daeron.dir.delete.on.start=true");
        props.add("-Daeron.dir.delete.on.shutdown=true");
        props.add("-Daeron.threading.mode=SHARED");
        if (settings.stream().noneMatch(x -> x.startsWith("-Daeron.sample.messageLength="))) {
            props.add("-Daeron.sample.messages=" + messages);
            props.add("-Daeron.sample.messageLength=4096");
        } else {
            props.add("-Daeron.sample.messages=" + messages * 4096 / PAGEWIRE_FRAME_BYTES);
        }
        props.addAll(settings);
        System.out.println("== Aeron EmbeddedExclusiveThroughput " + String.join(" ", settings));
        Process p = startSample(AERON_SAMPLE, props);
        List<Double> rates = readRates(p, "  ");
        if (!p.waitFor(10, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            throw new IllegalStateException("Aeron's sample did not finish within 10 minutes");
        }
        return steadyMedian(rates, "Aeron's sample (exit " + p.exitValue() + "); give more --aeron-messages");
    }

    /**
     * Starts one of Aeron's samples, by class name, from {@link #aeronReferenceJar()} in a child JVM with
     * {@code properties} ({@code -D...}); its "Execute again? (y/n)" is answered "n" up front.
     */
    public static Process startSample(String sampleClass, List<String> properties) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(jvmFlags());
        cmd.addAll(properties);
        cmd.add("-cp");
        cmd.add(aeronReferenceJar().toString());
        cmd.add(sampleClass);
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try (OutputStream in = p.getOutputStream()) {
            in.write("n\n".getBytes(StandardCharsets.US_ASCII)); // "Execute again? (y/n)"
        }
        return p;
    }

    /** Reads a sample's output to its end: the bytes per second of each rate report; other lines are echoed after {@code prefix}. */
    public static List<Double> readRates(Process p, String prefix) throws IOException {
        List<Double> rates = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                Matcher m = RATE.matcher(line);
                if (m.find()) {
                    rates.add(Double.parseDouble(m.group(2)));
                } else if (!line.isBlank()) {
                    System.out.println(prefix + line);
                }
            }
        }
        return rates;
    }

    /**
     * @param rates a sample's per-second reports, bytes per second
     * @param what names the sample in the error when there are too few reports
     * @return the median of the steady reports: the first (start-up) and the last (a partial second) are left out;
     *     with fewer than three reports, the best one
     */
    public static double steadyMedian(List<Double> rates, String what) {
        if (rates.isEmpty()) {
            throw new IllegalStateException("no rate report from " + what + " (it ran for less than a second, or not at all)");
        }
        if (rates.size() < 3) { // no steady second to take: the best one, said as such
            double best = rates.stream().mapToDouble(Double::doubleValue).max().orElseThrow();
            System.out.printf(Locale.ROOT, "  per second (GB/s): %s -> only %d reports, the best %.2f GB/s (more messages for a steady figure)%n",
                    rates.stream().map(x -> String.format(Locale.ROOT, "%.2f", x / 1e9)).toList(), rates.size(), best / 1e9);
            return best;
        }
        List<Double> steady = new ArrayList<>(rates.subList(1, rates.size() - 1));
        double[] s = steady.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        double median = s[s.length / 2];
        System.out.printf(Locale.ROOT, "  per second (GB/s): %s -> median %.2f GB/s%n",
                rates.stream().map(x -> String.format(Locale.ROOT, "%.2f", x / 1e9)).toList(), median / 1e9);
        return median;
    }

    /** Runs TransportBench for one URI in a child JVM (it exits the JVM when done); returns its output lines. */
    static List<String> transportBench(String uri, String bytes, int runs, int rtt, Path out) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(jvmFlags());
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(TransportBench.class.getName());
        cmd.addAll(List.of("--uri", uri, "--bytes", bytes, "--runs", Integer.toString(runs), "--rtt", Integer.toString(rtt),
                "--iperf", "false", "--out", out.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        List<String> lines = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                System.out.println(line);
                lines.add(line);
            }
        }
        if (!p.waitFor(30, TimeUnit.MINUTES) || p.exitValue() != 0) {
            throw new IllegalStateException("TransportBench for " + uri + " failed (exit " + (p.isAlive() ? "-" : p.exitValue()) + ")");
        }
        return lines;
    }
}
