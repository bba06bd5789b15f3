package io.pagewire.perf.e2e;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.agent.replica.ReplicaSecondary;
import io.pagewire.agent.replica.ReplicationConfig;
import io.pagewire.agent.replica.ReplicationPrimary;
import io.pagewire.agent.replica.ReplicationStats;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;
import org.HdrHistogram.Histogram;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Checkpoint-replication benchmark (issue 15, seed 004): checkpoint pause against guest RAM size at one dirty rate, for
 * each checkpoint interval and design, primary and secondary in one JVM over TCP on loopback, both guests writing at
 * random over the same working set (the secondary's guest from native code, under write-protection).
 * <pre>
 *   ReplicationBench [--rams 1G,4G,16G] [--populated 1G] [--rate 64M] [--working-set 256M] [--intervals 100,1000]
 *                    [--designs 1,2,3] [--seconds 5] [--secondary-rate 64M] [--uri tcp://127.0.0.1:0] [--out results.md]
 * </pre>
 * Design 1 = {@code PAUSE_ALL} + {@code WHOLE} (the seed's problem: everything at the pause, the whole cache copied);
 * design 2 = {@code BACKGROUND} + {@code DIRTY}; design 3 = {@code BACKGROUND} + {@code LAZY} (the secondary resumes before
 * the copy: pages are filled on fault and by a filler after the resume). A second table shows where the pause goes. A RAM larger than {@code --populated} is sparse: only about
 * {@code --populated} bytes of it hold data (the rest was never written), so 16 GiB runs on a machine that cannot hold
 * three copies of 16 GiB.
 */
public final class ReplicationBench {
    private ReplicationBench() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("expected --name value, got " + args[i]);
            }
            opt.put(args[i].substring(2), args[++i]);
        }
        long[] rams = Arrays.stream(opt.getOrDefault("rams", "1G,4G,16G").split(",")).mapToLong(ReplicationBench::size).toArray();
        long populated = size(opt.getOrDefault("populated", "1G"));
        long rate = size(opt.getOrDefault("rate", "64M"));
        long secondaryRate = size(opt.getOrDefault("secondary-rate", opt.getOrDefault("rate", "64M")));
        long workingSet = size(opt.getOrDefault("working-set", "256M"));
        long[] intervals = Arrays.stream(opt.getOrDefault("intervals", "100,1000").split(",")).mapToLong(Long::parseLong).toArray();
        int[] designs = Arrays.stream(opt.getOrDefault("designs", "1,2").split(",")).mapToInt(Integer::parseInt).toArray();
        double seconds = Double.parseDouble(opt.getOrDefault("seconds", "5"));
        String uri = opt.getOrDefault("uri", "tcp://127.0.0.1:0");
        List<String> rows = new ArrayList<>();
        List<String> stageRows = new ArrayList<>();
        stageRows.add("| RAM | interval | design | stop guest | collect | send | marker | ack wait | of which secondary: complete wait / apply span | resume | fill p50 / p99 ms | filled on fault / by filler per checkpoint | primary waited for fill ms |");
        stageRows.add("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        rows.add("| RAM (populated) | interval | design | checkpoints | pause p50 / p99 / max ms | initial-sync pause ms | pages at pause / checkpoint | background pages / checkpoint | cache copy p50 / p99 ms | copied pages / checkpoint |");
        rows.add("|---|---|---|---|---|---|---|---|---|---|");
        for (long ram : rams) {
            double zero = ram <= populated ? 0.25 : 1.0 - (double) populated / ram;
            try (GuestImage image = GuestImage.create(RegionSpec.memfd("pc.ram", ram), zero, 0, 1, false)) {
                long pop = populatedBytes(image.region());
                for (long intervalMs : intervals) {
                    for (int design : designs) {
                        String[] row = run(image, pop, rate, secondaryRate, workingSet, intervalMs, design, seconds, uri);
                        System.out.println(row[0]);
                        System.out.println(row[1]);
                        rows.add(row[0]);
                        stageRows.add(row[1]);
                    }
                }
            }
        }
        String table = String.join("\n", rows) + "\n\nPause stages, p50 ms (p99 in parentheses):\n\n" + String.join("\n", stageRows);
        System.out.println(table);
        if (opt.containsKey("out")) {
            Files.writeString(Path.of(opt.get("out")), table + "\n");
        }
    }

    private static String[] run(GuestImage image, long populated, long rate, long secondaryRate, long workingSet, long intervalMs, int design,
                              double seconds, String uri) throws Exception {
        GuestRegion pvm = image.region();
        ReplicationConfig config = new ReplicationConfig().intervalNs(TimeUnit.MILLISECONDS.toNanos(intervalMs))
                .design(design == 1 ? ReplicationConfig.Design.PAUSE_ALL : ReplicationConfig.Design.BACKGROUND);
        ReplicaSecondary.Apply apply = switch (design) {
            case 1 -> ReplicaSecondary.Apply.WHOLE;
            case 2 -> ReplicaSecondary.Apply.DIRTY;
            case 3 -> ReplicaSecondary.Apply.LAZY;
            default -> throw new IllegalArgumentException("design " + design + " is not 1, 2 or 3");
        };
        try (GuestRam svmRam = GuestRam.create()) {
            GuestRegion svm = svmRam.open(RegionSpec.memfd(pvm.name(), pvm.sizeBytes()));
            try (SyntheticGuest pvmGuest = new SyntheticGuest(pvm.memory().asSlice(0, pvm.sizeBytes()), pvm.pageSize(),
                         new SyntheticGuest.Config(1, rate, SyntheticGuest.Pattern.RANDOM, workingSet, 5), p -> true);
                 SyntheticGuest svmGuest = new SyntheticGuest(svm.memory().asSlice(0, svm.sizeBytes()), svm.pageSize(),
                         new SyntheticGuest.Config(1, secondaryRate, secondaryRate == 0 ? SyntheticGuest.Pattern.IDLE : SyntheticGuest.Pattern.RANDOM,
                                 workingSet, 9, SyntheticGuest.Access.STAMP), p -> true);
                 ReplicaSecondary secondary = new ReplicaSecondary(List.of(svm), svmGuest, apply);
                 Listener l = secondary.listen(uri)) {
                pvmGuest.start();
                svmGuest.start();
                AtomicReference<Throwable> failed = new AtomicReference<>();
                Thread s = Thread.ofPlatform().name("secondary").start(() -> {
                    try {
                        secondary.run(l, Duration.ofSeconds(60), null);
                    } catch (Throwable t) {
                        failed.set(t);
                    }
                });
                ReplicationStats st;
                try (ReplicationPrimary primary = ReplicationPrimary.connect(l.uri(), List.of(pvm), pvmGuest, config, (e, ns, crc) -> { })) {
                    Thread p = Thread.ofPlatform().name("primary").start(() -> {
                        try {
                            primary.run();
                        } catch (Throwable t) {
                            failed.compareAndSet(null, t);
                        }
                    });
                    // The run lasts `seconds` after the initial sync (first checkpoint).
                    while (primary.stats().checkpoints() == 0 && p.isAlive()) {
                        TimeUnit.MILLISECONDS.sleep(10);
                    }
                    TimeUnit.MILLISECONDS.sleep((long) (seconds * 1000));
                    primary.stop();
                    p.join();
                    s.join();
                    st = primary.stats();
                }
                if (failed.get() != null) {
                    throw new IllegalStateException("replication failed", failed.get());
                }
                Histogram pause = st.pauseNs();
                Histogram copy = st.applyNs();
                var json = st.toJson();
                long n = Math.max(1, st.checkpoints());
                String main = String.format(Locale.ROOT, "| %s (%s) | %d ms | %d | %d | %.1f / %.1f / %.1f | %.1f | %.0f | %.0f | %.1f / %.1f | %.0f |",
                        human(pvm.sizeBytes()), human(populated), intervalMs, design, st.checkpoints(),
                        pause.getValueAtPercentile(50) / 1e6, pause.getValueAtPercentile(99) / 1e6, pause.getMaxValue() / 1e6,
                        st.initialSyncPauseNs() / 1e6, (double) st.pausePages() / n, (double) st.backgroundPages() / n,
                        copy.getValueAtPercentile(50) / 1e6, copy.getValueAtPercentile(99) / 1e6,
                        json.get("secondary").get("copied-pages").asDouble() / n);
                var sec = json.get("secondary");
                var lazy = sec.get("lazy-fill");
                StringBuilder stages = new StringBuilder(String.format(Locale.ROOT, "| %s | %d ms | %d |", human(pvm.sizeBytes()), intervalMs, design));
                for (int i = 0; i < ReplicationStats.STAGES.length; i++) {
                    if (ReplicationStats.STAGES[i].equals("checksum")) {
                        continue;
                    }
                    if (ReplicationStats.STAGES[i].equals("resume")) {
                        stages.append(String.format(Locale.ROOT, " %.2f / %.2f (%.1f / %.1f) |", sec.get("complete-wait-ms").get("p50").asDouble(),
                                sec.get("apply-span-ms").get("p50").asDouble(), sec.get("complete-wait-ms").get("p99").asDouble(),
                                sec.get("apply-span-ms").get("p99").asDouble()));
                    }
                    Histogram h = st.stageNs(i);
                    stages.append(String.format(Locale.ROOT, " %.2f (%.1f) |", h.getValueAtPercentile(50) / 1e6, h.getValueAtPercentile(99) / 1e6));
                }
                long[] fills = st.fillPages();
                stages.append(String.format(Locale.ROOT, " %.1f / %.1f | %.0f / %.0f | %.1f |", lazy.get("fill-ms").get("p50").asDouble(),
                        lazy.get("fill-ms").get("p99").asDouble(), (double) fills[0] / n, (double) fills[1] / n, lazy.get("primary-wait-ms").asDouble()));
                System.out.println("INITIAL-SYNC design " + design + " " + json.get("initial-sync"));
                return new String[] {main, stages.toString()};
            }
        }
    }

    private static long populatedBytes(GuestRegion r) {
        long pages = 0;
        long p = 0;
        long n = r.pageCount();
        while (p < n) {
            long d = r.nextPopulatedPage(p, n);
            if (d >= n) {
                break;
            }
            long h = r.nextUnpopulatedPage(d, n);
            pages += h - d;
            p = h;
        }
        return pages * r.pageSize();
    }

    private static String human(long bytes) {
        return bytes >= 1L << 30 ? (bytes >> 30) + " GiB" : (bytes >> 20) + " MiB";
    }

    private static long size(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        long mul = t.endsWith("G") ? 1L << 30 : t.endsWith("M") ? 1L << 20 : t.endsWith("K") ? 1024 : 1;
        return Long.parseLong(mul == 1 ? t : t.substring(0, t.length() - 1)) * mul;
    }
}
