package io.pagewire.perf.e2e;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;
import io.pagewire.perf.BenchCli;
import io.pagewire.perf.report.HtmlReport;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;
import org.HdrHistogram.Histogram;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

/**
 * End-to-end transport benchmark between two JVM processes: background-lane throughput of
 * non-zero pages, urgent-lane round trips with the background lane idle and saturated, and
 * iperf3 over the same path in the same run for reference.
 * <pre>
 *   TransportBench [--uri URI]... [--bytes 2g] [--runs 3] [--rtt 2000] [--rtt-gap-us 200] [--repeat 1] [--warmup 0]
 *                  [--iperf true|false] [--iperf-seconds 5] [--out DIR] [--dst-exec CMD]
 * </pre>
 * {@code --uri} is a listen URI with port 0 (default {@code tcp://127.0.0.1:0}); give it
 * several times to compare settings. {@code --runs 0} skips the throughput runs;
 * {@code --repeat N} measures the idle and saturated round trips N times, each in fresh
 * connections, and reports every repeat and all of them merged; {@code --warmup N} first runs N
 * such repeats unrecorded (JIT compilation on both sides, first-touch of socket buffers, TCP slow
 * start), which the idle tail otherwise reflects. Results go to stdout and to
 * {@code DIR/transport-bench-*.md} with the histograms (merged) as {@code .hgrm} files.
 */
@Command(name = "TransportBench", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Background-lane throughput and urgent round trips between two JVMs, with iperf3 in the same run.")
public final class TransportBench implements Callable<Integer> {
    TransportBench() {
    }

    /** One URI's figures; {@code idle}/{@code busy} merge the repeats, {@code idleRuns}/{@code busyRuns} hold each. */
    private record Result(String uri, double[] gbps, Histogram idle, Histogram busy, List<Histogram> idleRuns, List<Histogram> busyRuns,
                          double[] busyGbps) {
    }

    @Option(names = "--uri", paramLabel = "LISTEN_URI", description = "a listen URI with port 0; repeat to compare settings (default tcp://127.0.0.1:0)")
    List<String> uris = new ArrayList<>();
    @Option(names = "--bytes", defaultValue = "2g", paramLabel = "SIZE", description = "non-zero pages moved per throughput run (default ${DEFAULT-VALUE})")
    long bytes;
    @Option(names = "--runs", defaultValue = "3", paramLabel = "N", description = "throughput runs per URI; 0 = none (default ${DEFAULT-VALUE})")
    int runs;
    @Option(names = "--rtt", defaultValue = "2000", paramLabel = "N", description = "urgent round trips per measurement (default ${DEFAULT-VALUE})")
    int rtt;
    @Option(names = "--rtt-gap-us", defaultValue = "200", paramLabel = "US", description = "pause between round trips in us (default ${DEFAULT-VALUE})")
    long rttGapUs;
    @Option(names = "--iperf", defaultValue = "true", arity = "1", paramLabel = "true|false",
            description = "measure iperf3 over loopback in the same run (default ${DEFAULT-VALUE})")
    boolean iperf;
    @Option(names = "--iperf-seconds", defaultValue = "5", paramLabel = "S", description = "length of each iperf3 run (default ${DEFAULT-VALUE})")
    int iperfSeconds;
    @Option(names = "--out", defaultValue = "perf/target/reports", paramLabel = "DIR", description = "report directory (default ${DEFAULT-VALUE})")
    Path out;
    @Option(names = "--dst-exec", defaultValue = "", paramLabel = "CMD", description = "prefix for the destination JVM, e.g. 'ip netns exec pw-dst'")
    String dstExec;
    @Option(names = "--repeat", defaultValue = "1", paramLabel = "N",
            description = "idle and saturated round trips measured N times, each in fresh connections (default ${DEFAULT-VALUE})")
    int repeat;
    @Option(names = "--warmup", defaultValue = "0", paramLabel = "N", description = "unrecorded repeats first (default ${DEFAULT-VALUE})")
    int warmup;
    @Option(names = "--serve", description = {"two hosts, destination side: listen on --listen with --bytes of RAM and serve sources",
            "(pagewire bench --to) one after another until stopped; starts an iperf3 server on --iperf-port for the reference"})
    boolean serve;
    @Option(names = "--listen", paramLabel = "URI", description = "with --serve: where to listen, e.g. tcp://0.0.0.0:4444 or rdma://10.0.0.2:4444")
    String listen;
    @Option(names = "--to", paramLabel = "URI", description = {"two hosts, source side: the URI a 'pagewire bench --serve' listens on;",
            "--bytes must match the server's; the reference is measured to the same host (iperf3, ib_write_bw)"})
    String to;
    @Option(names = "--sweep", paramLabel = "OPTION=V1,V2,...",
            description = {"measure every value of a source-side URI option, e.g. --sweep channels=1,2,4,8 --sweep batch-bytes=64k,256k,1m;",
                    "several --sweep options measure every combination"})
    List<String> sweeps = new ArrayList<>();
    @Option(names = "--iperf-port", defaultValue = "5201", paramLabel = "PORT",
            description = "two hosts: the iperf3 server's port (--serve starts it; --to uses it) (default ${DEFAULT-VALUE})")
    int iperfPort;
    @Option(names = "--aeron-reference-port", defaultValue = "40124", paramLabel = "PORT",
            description = {"two hosts, aeron: URIs: the UDP port of the reference, Aeron's own RateSubscriber (--serve starts it;",
                    "--to streams to it with Aeron's StreamingPublisher) (default ${DEFAULT-VALUE})"})
    int aeronReferencePort;
    @Option(names = "--aeron-reference-messages", defaultValue = "50000", paramLabel = "N",
            description = "two hosts, aeron: URIs: messages of the reference stream, each the size of a pagewire frame (default ${DEFAULT-VALUE})")
    long aeronReferenceMessages;

    public static void main(String[] args) {
        BenchCli.main(new TransportBench(), args);
    }

    @Override
    public Integer call() throws Exception {
        CommandLine cl = new CommandLine(this);
        if (runs < 0 || warmup < 0 || repeat < 1 || rtt < 1) {
            throw new CommandLine.ParameterException(cl, "--runs and --warmup must be >= 0, --repeat and --rtt >= 1 (got "
                    + runs + ", " + warmup + ", " + repeat + ", " + rtt + ")");
        }
        if (serve) {
            if (listen == null || to != null || !uris.isEmpty()) {
                throw new CommandLine.ParameterException(cl, "--serve needs --listen URI (and takes neither --to nor --uri)");
            }
            return serve();
        }
        if (to != null && !uris.isEmpty()) {
            throw new CommandLine.ParameterException(cl, "--to (a remote 'bench --serve') and --uri (a local destination JVM) exclude each other");
        }
        if (to == null && uris.isEmpty()) {
            uris.add("tcp://127.0.0.1:0");
        }
        try {
            uris = Sweeps.expand(to != null ? List.of(to) : uris, sweeps);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage());
        }
        Files.createDirectories(out);
        String stamp = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        System.out.printf("pagewire transport benchmark: %d MiB of non-zero 4 KiB pages, %d runs per URI, %d cores%n",
                bytes >> 20, runs, Runtime.getRuntime().availableProcessors());

        Arena arena = Arena.ofShared();
        MemorySegment ram = arena.allocate(bytes, 4096);
        fillNonZero(ram);
        RamLayout layout = RamLayout.of(RamRegion.of("pc.ram", ram, 4096));

        String iperfHost = to != null ? io.pagewire.transport.spi.TransportUri.parse(to).host() : null;
        boolean iperfHere = iperf && (to == null || to.startsWith("tcp:"));
        Double iperfBefore = iperfHere ? iperf3(iperfHost, iperfSeconds, 1) : null;
        Double iperfParallel = iperfHere ? iperf3(iperfHost, iperfSeconds, 2) : null;
        String otherReference = to == null ? null : Reference.forRemote(to, iperf, aeronReferencePort, aeronReferenceMessages);
        List<Result> results = new ArrayList<>();
        for (String uri : uris) {
            results.add(benchOne(uri, to != null, layout, bytes, runs, rtt, rttGapUs, warmup, repeat, out, stamp, dstExec));
        }
        Double iperfAfter = iperfHere ? iperf3(iperfHost, iperfSeconds, 1) : null;
        boolean iperf = iperfHere;
        String where = to == null ? "loopback" : "to " + iperfHost;

        StringBuilder md = new StringBuilder();
        md.append("# Transport benchmark ").append(stamp).append("\n\n");
        md.append(String.format(Locale.ROOT, "%d MiB of non-zero 4 KiB pages from a source JVM to a destination JVM (pre-populated RAM)%s, "
                + "%d runs each; %d cores.%n%n", bytes >> 20, to == null ? "" : " on another host (`bench --serve` at " + to + ")", runs,
                Runtime.getRuntime().availableProcessors()));
        if (otherReference != null) {
            md.append(otherReference).append("\n\n");
        }
        if (iperf) {
            md.append(String.format(Locale.ROOT, "iperf3 " + where + " TCP in the same run, one stream: %.2f GB/s before, %.2f GB/s after"
                            + " (%.1f / %.1f Gbit/s); two streams (-P 2): %.2f GB/s (%.1f Gbit/s). \"vs iperf3\" compares with the best"
                            + " one-stream figure.%n%n",
                    iperfBefore / 8e9, iperfAfter / 8e9, iperfBefore / 1e9, iperfAfter / 1e9, iperfParallel / 8e9, iperfParallel / 1e9));
        }
        md.append("| URI | throughput GB/s (runs) | best | vs iperf3 | urgent RTT idle p50 / p90 / p99 / max (us) | urgent RTT saturated p50 / p90 / p99 / max (us) | p99 ratio |\n");
        md.append("|---|---|---|---|---|---|---|\n");
        double iperfRef = iperf ? Math.max(iperfBefore, iperfAfter) / 8e9 : Double.NaN;
        for (Result r : results) {
            double best = Arrays.stream(r.gbps).max().orElse(Double.NaN);
            md.append(String.format(Locale.ROOT, "| `%s` | %s | %s | %s | %s | %s | %.2f |%n", r.uri,
                    runs == 0 ? "-" : Arrays.stream(r.gbps).mapToObj(g -> String.format(Locale.ROOT, "%.2f", g)).toList(),
                    runs == 0 ? "-" : String.format(Locale.ROOT, "%.2f", best),
                    iperf && runs > 0 ? String.format(Locale.ROOT, "%.0f%%", 100 * best / iperfRef) : "-",
                    pct(r.idle), pct(r.busy), r.busy.getValueAtPercentile(99) / (double) r.idle.getValueAtPercentile(99)));
        }
        if (repeat > 1) {
            md.append("\nEach repeat (fresh connections):\n\n| URI | repeat | idle p50 / p90 / p99 / max (us) | saturated p50 / p90 / p99 / max (us) |"
                    + " saturated p99 / idle p99 | background while saturated GB/s |\n|---|---|---|---|---|---|\n");
            for (Result r : results) {
                for (int i = 0; i < r.idleRuns.size(); i++) {
                    Histogram idle = r.idleRuns.get(i);
                    Histogram busy = r.busyRuns.get(i);
                    md.append(String.format(Locale.ROOT, "| `%s` | %d | %s | %s | %.2f | %.3f |%n", r.uri, i + 1, pct(idle), pct(busy),
                            busy.getValueAtPercentile(99) / (double) idle.getValueAtPercentile(99), r.busyGbps[i]));
                }
            }
        }
        md.append("\nSaturated: the source sends rounds of the whole RAM continuously while the destination sends one page request at a time ")
                .append("(").append(rtt).append(" requests, ").append(rttGapUs).append(" us apart");
        if (repeat > 1) {
            md.append(", ").append(repeat).append(" repeats merged");
        }
        if (warmup > 0) {
            md.append(", after ").append(warmup).append(" unrecorded warm-up repeat(s)");
        }
        md.append("); the round trip is request sent to page placed.\n");
        System.out.println();
        System.out.println(md);
        Path report = out.resolve("transport-bench-" + stamp + ".md");
        Files.writeString(report, md.toString(), StandardCharsets.UTF_8);
        System.out.println("report: " + report);
        Path html = htmlReport(results, iperf ? Math.max(iperfBefore, iperfAfter) : null, iperf ? iperfParallel : null, where, otherReference)
                .write(out.resolve("transport-bench-" + stamp));
        System.out.println("HTML report: " + html + " (raw results beside it as .json)");
        return 0;
    }

    /** The HTML report: throughput per run, urgent round-trip percentile curves idle and saturated, p50/p99 side by side. */
    private HtmlReport htmlReport(List<Result> results, Double iperfBps, Double iperfTwoBps, String where, String otherReference) {
        HtmlReport r = new HtmlReport("pagewire transport benchmark");
        r.fact("pages moved per run", (bytes >> 20) + " MiB of non-zero 4 KiB pages");
        r.fact("runs per URI", Integer.toString(runs));
        r.fact("urgent round trips", rtt + " per measurement, " + rttGapUs + " us apart, " + repeat + " repeat(s), " + warmup + " warm-up");
        r.fact("destination", to == null ? "a JVM on this host" + (dstExec.isBlank() ? "" : " (" + dstExec + ")") : "bench --serve at " + to);
        if (iperfBps != null) {
            r.fact("iperf3 " + where, String.format(Locale.ROOT, "%.2f GB/s one stream (best of before/after), %.2f GB/s two streams",
                    iperfBps / 8e9, iperfTwoBps / 8e9));
        }
        if (otherReference != null) {
            r.fact("reference", otherReference);
        }
        ObjectNode raw = r.results();
        ArrayNode uriResults = raw.putArray("uris");
        List<String> names = new ArrayList<>();
        Map<String, double[]> perRun = new LinkedHashMap<>();
        for (Result res : results) {
            ObjectNode u = uriResults.addObject().put("uri", res.uri);
            ArrayNode g = u.putArray("gbps");
            Arrays.stream(res.gbps).forEach(g::add);
            u.set("urgent-rtt-idle-us", percentiles(res.idle));
            u.set("urgent-rtt-saturated-us", percentiles(res.busy));
            ArrayNode bg = u.putArray("background-gbps-while-saturated");
            Arrays.stream(res.busyGbps).forEach(bg::add);
            names.add(res.uri);
        }
        if (iperfBps != null) {
            raw.put("iperf3-bits-per-second", iperfBps);
        }
        for (int run = 0; run < runs; run++) {
            double[] v = new double[results.size()];
            for (int i = 0; i < results.size(); i++) {
                v[i] = results.get(i).gbps[run];
            }
            perRun.put("run " + (run + 1), v);
        }
        if (iperfBps != null) {
            double[] v = new double[results.size()];
            Arrays.fill(v, iperfBps / 8e9);
            perRun.put("iperf3 one stream", v);
        }
        if (runs > 0) {
            r.chart("Throughput per run", "GB/s of page data from source RAM to destination RAM, each run a fresh connection; iperf3 over the same path for reference.",
                    HtmlReport.bars("GB/s", names, perRun));
        }
        Map<String, Histogram> curves = new LinkedHashMap<>();
        for (Result res : results) {
            curves.put(res.uri + " idle", res.idle);
            curves.put(res.uri + " saturated", res.busy);
        }
        r.chart("Urgent-lane round trips: percentiles", "Request sent to page placed, microseconds (log scale), background lane idle and saturated.",
                HtmlReport.percentileCurves(curves));
        Map<String, double[]> cmp = new LinkedHashMap<>();
        cmp.put("idle p50", results.stream().mapToDouble(x -> x.idle.getValueAtPercentile(50) / 1e3).toArray());
        cmp.put("saturated p50", results.stream().mapToDouble(x -> x.busy.getValueAtPercentile(50) / 1e3).toArray());
        cmp.put("idle p99", results.stream().mapToDouble(x -> x.idle.getValueAtPercentile(99) / 1e3).toArray());
        cmp.put("saturated p99", results.stream().mapToDouble(x -> x.busy.getValueAtPercentile(99) / 1e3).toArray());
        r.chart("Urgent vs saturated", "The urgent lane must not wait behind the bulk stream: saturated p99 close to idle p99.",
                HtmlReport.bars("microseconds", names, cmp));
        return r;
    }

    private static ObjectNode percentiles(Histogram h) {
        ObjectNode o = io.pagewire.agent.Json.object();
        for (double p : new double[]{50, 90, 99, 99.9}) {
            o.put("p" + (p == Math.rint(p) ? Long.toString((long) p) : Double.toString(p)), h.getValueAtPercentile(p) / 1e3);
        }
        o.put("max", h.getMaxValue() / 1e3);
        o.put("count", h.getTotalCount());
        return o;
    }

    private static String pct(Histogram h) {
        return String.format(Locale.ROOT, "%.0f / %.0f / %.0f / %.0f", h.getValueAtPercentile(50) / 1e3, h.getValueAtPercentile(90) / 1e3,
                h.getValueAtPercentile(99) / 1e3, h.getMaxValue() / 1e3);
    }

    /**
     * Measures one URI: a local destination JVM listening on {@code uri}, or ({@code remote}) the
     * {@code bench --serve} at {@code uri}.
     */
    private static Result benchOne(String listenUri, boolean remote, RamLayout layout, long bytes, int runs, int rtt, long rttGapUs, int warmup,
                                   int repeat, Path out, String stamp, String dstExec) throws Exception {
        try (Child child = remote ? null : new Child(listenUri, bytes, dstExec)) {
            String target = remote ? listenUri : child.uri;
            System.out.println("== " + listenUri + (remote ? " (remote bench --serve)" : " (destination pid " + child.process.pid() + " at " + target + ")"));
            double[] gbps = new double[runs];
            for (int r = 0; r < runs; r++) {
                Session s = new Session(target, layout);
                try (s) {
                    long t0 = System.nanoTime();
                    s.conn.background().sendPages(0, 0, layout.region(0).pageCount());
                    s.conn.background().sendComplete();
                    s.awaitComplete();
                    double sec = (System.nanoTime() - t0) / 1e9;
                    gbps[r] = bytes / sec / 1e9;
                    System.out.printf(Locale.ROOT, "  run %d: %.3f s, %.2f GB/s (%.1f Gbit/s)%n", r + 1, sec, gbps[r], gbps[r] * 8);
                }
            }
            List<Histogram> idleRuns = new ArrayList<>();
            List<Histogram> busyRuns = new ArrayList<>();
            double[] busyGbps = new double[repeat];
            for (int k = 0; k < warmup; k++) {
                Histogram idle = idleRtt(target, layout, rtt, rttGapUs);
                Histogram busy = new Histogram(TimeUnit.SECONDS.toNanos(10), 3);
                saturatedRtt(target, layout, rtt, rttGapUs, busy);
                System.out.println("  warm-up (not recorded): idle " + pct(idle) + " us, saturated " + pct(busy) + " us");
            }
            for (int k = 0; k < repeat; k++) {
                Histogram idle = idleRtt(target, layout, rtt, rttGapUs);
                System.out.println("  urgent RTT, background idle:      " + pct(idle) + " us (p50 / p90 / p99 / max)");
                idleRuns.add(idle);
                Histogram busy = new Histogram(TimeUnit.SECONDS.toNanos(10), 3);
                busyGbps[k] = saturatedRtt(target, layout, rtt, rttGapUs, busy);
                System.out.printf(Locale.ROOT, "  urgent RTT, background saturated: %s us (p50 / p90 / p99 / max) while moving %.3f GB/s%n",
                        pct(busy), busyGbps[k]);
                busyRuns.add(busy);
            }
            Histogram idle = merged(idleRuns);
            Histogram busy = merged(busyRuns);
            String tag = listenUri.replaceAll("[^A-Za-z0-9=]+", "_");
            writeHgrm(out.resolve("urgent-rtt-idle-" + tag + "-" + stamp + ".hgrm"), idle);
            writeHgrm(out.resolve("urgent-rtt-saturated-" + tag + "-" + stamp + ".hgrm"), busy);
            return new Result(listenUri, gbps, idle, busy, idleRuns, busyRuns, busyGbps);
        }
    }

    private static Histogram merged(List<Histogram> runs) {
        Histogram all = new Histogram(TimeUnit.SECONDS.toNanos(10), 3);
        runs.forEach(all::add);
        return all;
    }

    /** Round trips on a fresh connection whose background lane is idle. */
    private static Histogram idleRtt(String target, RamLayout layout, int rtt, long rttGapUs) throws Exception {
        try (Session s = new Session(target, layout)) {
            Histogram idle = s.rtt(rtt, rttGapUs);
            s.conn.background().sendComplete();
            s.awaitComplete();
            return idle;
        }
    }

    /**
     * Round trips on a fresh connection while its background lane sends whole-RAM rounds.
     *
     * @param into receives the round trips
     * @return the background rate meanwhile, GB/s
     */
    private static double saturatedRtt(String target, RamLayout layout, int rtt, long rttGapUs, Histogram into) throws Exception {
        try (Session s = new Session(target, layout)) {
            AtomicBoolean stop = new AtomicBoolean();
            long pages = layout.region(0).pageCount();
            long t0 = System.nanoTime();
            CompletableFuture<Long> push = CompletableFuture.supplyAsync(() -> {
                long sent = 0;
                for (long round = 1; !stop.get(); round++) {
                    // Chunks, so the stop flag is seen within a fraction of a round.
                    for (long p = 0; p < pages && !stop.get(); p += 8192) {
                        long n = Math.min(8192, pages - p);
                        s.conn.background().sendPages(0, p, n);
                        sent += n;
                    }
                    s.conn.background().sendRoundEnd(round);
                }
                return sent;
            });
            // Let the stream reach full speed first.
            while (s.conn.stats().pagesSent() < Math.min(pages, 65536)) {
                if (push.isDone()) {
                    push.join();
                }
                Thread.onSpinWait();
            }
            into.add(s.rtt(rtt, rttGapUs));
            stop.set(true);
            long sent = push.get(60, TimeUnit.SECONDS);
            double gbps = sent * 4096.0 / ((System.nanoTime() - t0) / 1e9) / 1e9;
            s.conn.background().sendComplete();
            s.awaitComplete();
            return gbps;
        }
    }

    private static void writeHgrm(Path file, Histogram h) throws IOException {
        try (PrintStream ps = new PrintStream(Files.newOutputStream(file), true, StandardCharsets.UTF_8)) {
            h.outputPercentileDistribution(ps, 1000.0); // microseconds
        }
    }

    /** One source connection with a handler that answers page requests and collects replies. */
    private static final class Session implements AutoCloseable {
        final Connection conn;
        final CountDownLatch completed = new CountDownLatch(1);
        final AtomicReference<TransportException> error = new AtomicReference<>();
        final AtomicReference<CompletableFuture<byte[]>> reply = new AtomicReference<>(new CompletableFuture<>());

        Session(String uri, RamLayout layout) {
            AtomicReference<Connection> self = new AtomicReference<>();
            MessageHandler h = new MessageHandler() {
                @Override
                public void onPageRequest(int regionId, long firstPage, int pageCount) {
                    self.get().urgent().sendPages(regionId, firstPage, pageCount);
                }

                @Override
                public void onControl(LaneKind lane, MemorySegment payload) {
                    reply.get().complete(payload.toArray(ValueLayout.JAVA_BYTE));
                }

                @Override
                public void onComplete() {
                    completed.countDown();
                }

                @Override
                public void onError(TransportException e) {
                    error.set(e);
                    completed.countDown();
                    reply.get().completeExceptionally(e);
                }
            };
            conn = Transports.connect(uri, new TransportContext().layout(layout).handler(h));
            self.set(conn);
        }

        Histogram rtt(int count, long gapUs) throws Exception {
            reply.set(new CompletableFuture<>());
            conn.urgent().sendControl(MemorySegment.ofArray(("rtt " + count + " " + gapUs).getBytes(StandardCharsets.UTF_8)));
            byte[] b = reply.get().get(5, TimeUnit.MINUTES);
            return Histogram.decodeFromCompressedByteBuffer(ByteBuffer.wrap(b), 0);
        }

        void awaitComplete() throws InterruptedException {
            if (!completed.await(10, TimeUnit.MINUTES)) {
                throw new IllegalStateException("no completion acknowledgement within 10 minutes: " + conn.stats());
            }
            if (error.get() != null) {
                throw error.get();
            }
        }

        @Override
        public void close() {
            conn.close();
        }
    }

    /** The destination JVM. */
    private static final class Child implements AutoCloseable {
        final Process process;
        final String uri;

        Child(String listenUri, long bytes, String exec) throws IOException {
            List<String> cmd = new ArrayList<>();
            // e.g. "ip netns exec pw-dst": the destination in another network namespace (scripts/slow-link.sh)
            if (!exec.isBlank()) {
                cmd.addAll(Arrays.asList(exec.trim().split("\\s+")));
            }
            cmd.add(ProcessHandle.current().info().command().orElse("java"));
            for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                if (a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("-XX:") || a.startsWith("-Xm")
                        || a.startsWith("-Dpagewire")) {
                    cmd.add(a);
                }
            }
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add(BenchDestination.class.getName());
            cmd.add(listenUri);
            cmd.add(Long.toString(bytes));
            process = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
            String line = r.readLine();
            if (line == null || !line.startsWith("LISTENING ")) {
                process.destroyForcibly();
                throw new IllegalStateException("destination JVM did not start listening: " + line);
            }
            uri = line.substring("LISTENING ".length());
        }

        @Override
        public void close() throws InterruptedException {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** Fills every page with non-zero data (every 8-byte word differs). */
    static void fillNonZero(MemorySegment m) {
        long x = 0x9E3779B97F4A7C15L;
        for (long off = 0; off < m.byteSize(); off += 8) {
            x += 0x9E3779B97F4A7C15L;
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, off, x | 1);
        }
    }

    /**
     * iperf3 for {@code seconds} with {@code streams} parallel streams: over loopback with a server of
     * its own ({@code host} null), or to the iperf3 server a {@code bench --serve} started on {@code host}.
     *
     * @return received bits per second (iperf3's {@code end.sum_received.bits_per_second})
     */
    double iperf3(String host, int seconds, int streams) throws IOException, InterruptedException {
        int port = iperfPort;
        Process server = null;
        if (host == null) {
            try (ServerSocket s = new ServerSocket(0)) {
                port = s.getLocalPort();
            }
            server = new ProcessBuilder("iperf3", "-s", "-1", "-p", Integer.toString(port)).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        }
        String target = host == null ? "127.0.0.1" : host;
        try {
            String json = null;
            for (int attempt = 0; attempt < 50 && json == null; attempt++) {
                Process client = new ProcessBuilder("iperf3", "-c", target, "-p", Integer.toString(port), "-t", Integer.toString(seconds),
                        "-P", Integer.toString(streams), "-J")
                        .redirectErrorStream(true).start();
                String text = new String(client.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                if (client.waitFor() == 0) {
                    json = text;
                } else if (!text.contains("Connection refused") && !text.contains("server is busy")) {
                    throw new IOException("iperf3 failed: " + text);
                } else {
                    Thread.sleep(100); // the server is still starting (or finishing its last test); retry
                }
            }
            if (json == null) {
                throw new IOException("no iperf3 server answered on " + target + ":" + port
                        + (host == null ? "" : " (does 'pagewire bench --serve' run there, with iperf3 installed, on --iperf-port " + port + "?)"));
            }
            tools.jackson.databind.JsonNode bps = io.pagewire.agent.Json.parseObject(json, "iperf3's -J output")
                    .path("end").path("sum_received").path("bits_per_second");
            if (!bps.isNumber()) {
                throw new IOException("iperf3's JSON has no end.sum_received.bits_per_second");
            }
            System.out.printf(Locale.ROOT, "iperf3 to %s, %d stream(s): %.2f Gbit/s = %.2f GB/s%n", target, streams, bps.asDouble() / 1e9,
                    bps.asDouble() / 8e9);
            return bps.asDouble();
        } catch (IOException e) {
            throw new IOException("iperf3 is needed for the reference figure (apt-get install iperf3), or pass --iperf false: " + e.getMessage(), e);
        } finally {
            if (server != null) {
                server.destroyForcibly();
            }
        }
    }

    /**
     * {@code --serve}: the destination of a two-host benchmark, in this JVM, until it is stopped;
     * an iperf3 server beside it for the TCP reference when iperf3 is installed.
     */
    private int serve() throws Exception {
        Process iperfServer = null;
        if (iperf && listen.startsWith("tcp:")) {
            try {
                iperfServer = new ProcessBuilder("iperf3", "-s", "-p", Integer.toString(iperfPort)).redirectErrorStream(true)
                        .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
                System.err.println("iperf3 server on port " + iperfPort + " (the source's reference); --iperf false to do without");
            } catch (IOException e) {
                System.err.println("no iperf3 here (" + e.getMessage() + "): sources get no TCP reference figure; apt-get install iperf3");
            }
        }
        if (listen.startsWith("rdma:") && iperf) {
            Reference.ibWriteBwServer();
        }
        Process aeronSubscriber = listen.startsWith("aeron:") && iperf
                ? Reference.aeronSubscriber(Reference.aeronHost(io.pagewire.transport.spi.TransportUri.parse(listen)), aeronReferencePort)
                : null;
        List<Process> started = new ArrayList<>();
        for (Process p : new Process[] {iperfServer, aeronSubscriber}) {
            if (p != null) {
                started.add(p);
            }
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> started.forEach(Process::destroyForcibly)));
        BenchDestination.serveForever(listen, bytes);
        return 0;
    }
}
