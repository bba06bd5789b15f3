package io.pagewire.perf.e2e;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.agent.snapshot.FaultLatencyPolicy;
import io.pagewire.agent.snapshot.SnapshotConfig;
import io.pagewire.agent.snapshot.SnapshotEngine;
import io.pagewire.agent.snapshot.SnapshotFileWriter;
import io.pagewire.agent.snapshot.SnapshotLayout;
import io.pagewire.agent.snapshot.SnapshotStats;
import io.pagewire.agent.snapshot.StorageOptions;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import org.HdrHistogram.Histogram;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;

/**
 * Live-snapshot benchmark (issue 14, seed 003): write-fault latency (p50, p99, p99.9, max) and total snapshot time
 * of a synthetic guest whose vCPUs write at random while its RAM is saved to a snapshot file, for each fault-latency
 * policy, storage and vCPU load; the guest's write rate during the snapshot against before it; and the time to
 * write the same image with no guest running. One guest image is made once and snapshotted again and again.
 * <pre>
 *   SnapshotBench [--ram 2G] [--vcpus 1,2] [--rates 64M,0] [--policies none,seed,urgent,adaptive]
 *                 [--storage tmpfs=/dev/shm,work=/work/tmp,slow=/dev/shm?rate=256M&amp;latency=1ms] [--no-cbw-rows]
 *                 [--pool 32M] [--writers 2] [--backing memfd] [--out results.md]
 * </pre>
 * Rate 0 = the vCPUs write as fast as they can. {@code --no-cbw-rows} adds rows without copy-before-write
 * (QEMU's way: the faulting vCPU waits until its page is written) for the none and urgent policies.
 */
public final class SnapshotBench {
    private SnapshotBench() {
    }

    private static final long MIB = 1L << 20;

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + a);
            }
            if (a.equals("--no-cbw-rows")) {
                opt.put(a.substring(2), "true");
            } else {
                opt.put(a.substring(2), args[++i]);
            }
        }
        long ram = size(opt.getOrDefault("ram", "2G"));
        int[] vcpus = Arrays.stream(opt.getOrDefault("vcpus", "1,2").split(",")).mapToInt(Integer::parseInt).toArray();
        long[] rates = Arrays.stream(opt.getOrDefault("rates", "64M,0").split(",")).mapToLong(SnapshotBench::size).toArray();
        List<FaultLatencyPolicy> policies = Arrays.stream(opt.getOrDefault("policies", "none,seed,urgent,adaptive").split(","))
                .map(FaultLatencyPolicy::parse).toList();
        long pool = size(opt.getOrDefault("pool", "32M"));
        int writers = Integer.parseInt(opt.getOrDefault("writers", "2"));
        boolean cbwRows = opt.containsKey("no-cbw-rows");
        Map<String, String> storages = new LinkedHashMap<>();
        for (String s : opt.getOrDefault("storage", "tmpfs=/dev/shm,work=/work/tmp,slow=/dev/shm?rate=256M&latency=1ms").split(",")) {
            int eq = s.indexOf('=');
            storages.put(s.substring(0, eq), s.substring(eq + 1));
        }
        Path out = Path.of(opt.getOrDefault("out", "perf/target/reports/snapshot-bench.md")); // as the other benches: never the work tree
        String backing = opt.getOrDefault("backing", "memfd");

        List<String> rows = new ArrayList<>();
        rows.add("| storage | vCPUs | write rate | policy | total s | no-guest s | ratio | faults | fault p50 us | p99 us | p99.9 us | max us"
                + " | pool waits | guest writes/s before | during |");
        rows.add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        RegionSpec spec = backing.equals("anonymous") ? RegionSpec.anonymous("pc.ram", ram) : RegionSpec.memfd("pc.ram", ram);
        System.out.println("making a " + (ram >> 20) + " MiB guest image (" + backing + ") ...");
        try (GuestImage image = GuestImage.create(spec, 0.25, 0.0, 1, false)) {
            GuestRegion region = image.region();
            for (Map.Entry<String, String> st : storages.entrySet()) {
                Target target = Target.parse(st.getValue());
                Files.createDirectories(target.dir);
                Path file = target.dir.resolve("pagewire-snapshot-bench.pwsnap");
                // Twice: the first warms up the JIT and the file system; the second is the baseline.
                Result base = null;
                for (int i = 0; i < 2; i++) {
                    base = run(image, region, file, target.storage, 1, 0, SyntheticGuest.Pattern.IDLE,
                            new SnapshotConfig().policy(FaultLatencyPolicy.URGENT).poolBytes(pool).writerThreads(writers));
                }
                System.out.printf(Locale.ROOT, "%s: no guest: %.2f s (%s)%n", st.getKey(), base.totalS, base.stats.phases());
                for (int v : vcpus) {
                    for (long rate : rates) {
                        List<SnapshotConfig> configs = new ArrayList<>();
                        for (FaultLatencyPolicy p : policies) {
                            configs.add(new SnapshotConfig().policy(p).poolBytes(pool).writerThreads(writers));
                        }
                        if (cbwRows) {
                            configs.add(new SnapshotConfig().policy(FaultLatencyPolicy.NONE).poolBytes(pool).writerThreads(writers).copyBeforeWrite(false));
                            configs.add(new SnapshotConfig().policy(FaultLatencyPolicy.URGENT).poolBytes(pool).writerThreads(writers).copyBeforeWrite(false));
                        }
                        for (SnapshotConfig c : configs) {
                            Result r = run(image, region, file, target.storage, v, rate, SyntheticGuest.Pattern.RANDOM, c);
                            Histogram h = r.stats.faultLatency();
                            String row = String.format(Locale.ROOT, "| %s | %d | %s | %s%s | %.2f | %.2f | %.2f | %d | %.1f | %.1f | %.1f | %.1f | %d | %.0f | %.0f |",
                                    st.getKey(), v, rate == 0 ? "max" : (rate >> 20) + " MiB/s", c.policy().cliName(), c.copyBeforeWrite() ? "" : " (no cbw)",
                                    r.totalS, base.totalS, r.totalS / base.totalS, r.stats.faultPages(), h.getValueAtPercentile(50) / 1e3,
                                    h.getValueAtPercentile(99) / 1e3, h.getValueAtPercentile(99.9) / 1e3, h.getMaxValue() / 1e3, r.stats.poolWaits(),
                                    r.before, r.during);
                            rows.add(row);
                            System.out.println(row + "  [" + r.stats.phases() + "]");
                            write(out, rows);
                        }
                    }
                }
                Files.deleteIfExists(file);
            }
        }
        write(out, rows);
        System.out.println("results in " + out.toAbsolutePath());
    }

    private record Target(Path dir, StorageOptions storage) {
        static Target parse(String s) {
            int q = s.indexOf('?');
            Path dir = Path.of(q < 0 ? s : s.substring(0, q));
            long rate = 0;
            long latency = 0;
            if (q >= 0) {
                for (String kv : s.substring(q + 1).split("&")) {
                    String[] p = kv.split("=", 2);
                    switch (p[0]) {
                        case "rate" -> rate = size(p[1]);
                        case "latency" -> latency = p[1].endsWith("ms") ? Long.parseLong(p[1].replace("ms", "")) * 1_000_000
                                : Long.parseLong(p[1].replace("us", "")) * 1_000;
                        default -> throw new IllegalArgumentException("storage option " + p[0] + " is not rate or latency");
                    }
                }
            }
            return new Target(dir, new StorageOptions(rate, latency));
        }
    }

    private record Result(double totalS, SnapshotStats stats, double before, double during) {
    }

    private static Result run(GuestImage image, GuestRegion region, Path file, StorageOptions storage, int vcpus, long rate,
            SyntheticGuest.Pattern pattern, SnapshotConfig config) throws Exception {
        Files.deleteIfExists(file);
        SyntheticGuest guest = new SyntheticGuest(region.memory(), region.pageSize(),
                new SyntheticGuest.Config(vcpus, rate, pattern, region.sizeBytes(), 7, SyntheticGuest.Access.STAMP),
                p -> !image.balloon().isBallooned(p)).start();
        try {
            long w0 = guest.writes();
            long t0 = System.nanoTime();
            LockSupport.parkNanos(1_000_000_000L);
            double before = (guest.writes() - w0) / ((System.nanoTime() - t0) / 1e9);
            try (SnapshotFileWriter w = SnapshotFileWriter.create(file, List.of(new SnapshotLayout.RegionSpec(region.name(), region.sizeBytes(),
                    region.pageSize())), storage)) {
                long w1 = guest.writes();
                long t1 = System.nanoTime();
                try (SnapshotEngine e = SnapshotEngine.start(List.of(region), image.balloons(), guest, w, config, null)) {
                    e.await();
                    double during = (guest.writes() - w1) / ((System.nanoTime() - t1) / 1e9);
                    return new Result(e.stats().totalNs() / 1e9, e.stats(), before, during);
                }
            }
        } finally {
            guest.close();
            Files.deleteIfExists(file);
        }
    }

    private static void write(Path out, List<String> rows) throws IOException {
        if (out.toAbsolutePath().getParent() != null) {
            Files.createDirectories(out.toAbsolutePath().getParent());
        }
        try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(out))) {
            rows.forEach(w::println);
        }
    }

    private static long size(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        long mul = t.endsWith("G") ? 1L << 30 : t.endsWith("M") ? MIB : t.endsWith("K") ? 1024 : 1;
        return Long.parseLong(mul == 1 ? t : t.substring(0, t.length() - 1)) * mul;
    }
}
