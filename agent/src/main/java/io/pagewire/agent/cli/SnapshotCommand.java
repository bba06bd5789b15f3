package io.pagewire.agent.cli;

import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.agent.snapshot.FaultLatencyPolicy;
import io.pagewire.agent.snapshot.SnapshotConfig;
import io.pagewire.agent.snapshot.SnapshotEngine;
import io.pagewire.agent.snapshot.SnapshotFileWriter;
import io.pagewire.agent.snapshot.SnapshotLayout;
import io.pagewire.agent.snapshot.SnapshotSink;
import io.pagewire.agent.snapshot.SnapshotStats;
import io.pagewire.agent.snapshot.TransportSnapshotSink;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import org.HdrHistogram.Histogram;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.locks.LockSupport;

/** {@code pagewire snapshot}: a live snapshot of a running synthetic guest's RAM. */
@Command(name = "snapshot", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run a synthetic guest and take a live snapshot of its RAM while its vCPUs keep writing (userfaultfd",
                "write-protection, copy-before-write), to a file (file:PATH, see docs/snapshot-format.md) or over a transport to",
                "'pagewire receive --snapshot FILE'. Exits 0 when the snapshot is complete."})
final class SnapshotCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--to", required = true, paramLabel = "TARGET",
            description = {"file:PATH[?rate=SIZE&latency=DURATION] (rate caps the write rate in bytes/s, latency is added to each write:",
                    "emulated slow storage), or a transport URI such as tcp://host:4444"})
    String to;

    @Option(names = "--policy", defaultValue = "adaptive", paramLabel = "P",
            description = "fault-latency policy: none, seed, urgent, adaptive (default ${DEFAULT-VALUE}; see docs/snapshot.md)")
    String policy;

    @Option(names = "--pool", defaultValue = "32M", paramLabel = "SIZE", description = "memory for faulted copies (default ${DEFAULT-VALUE})")
    long pool;

    @Option(names = "--writers", defaultValue = "2", paramLabel = "N", description = "writer threads (default ${DEFAULT-VALUE})")
    int writers;

    @Option(names = "--chunk-pages", defaultValue = "16", paramLabel = "N", description = "pages per background copy, 1..64 (default ${DEFAULT-VALUE})")
    int chunkPages;

    @Option(names = "--no-copy-before-write",
            description = "hold a faulting vCPU until its page is written to the target, as QEMU's patch does (for comparison)")
    boolean noCopyBeforeWrite;

    @Option(names = "--warmup", defaultValue = "1", paramLabel = "SECONDS",
            description = "let the guest run this long before the snapshot (its write rate then is the 'without' figure) (default ${DEFAULT-VALUE})")
    double warmupSeconds;

    @Option(names = "--hgrm", paramLabel = "FILE", description = "write the fault-latency histogram here (HdrHistogram percentiles, us)")
    Path hgrm;

    @Option(names = "--json", description = "print the result as JSON")
    boolean json;

    @Mixin
    GuestOptions guest;

    @Override
    public Integer call() throws Exception {
        SyntheticGuest.Pattern pattern = guest.pattern();
        FaultLatencyPolicy p = FaultLatencyPolicy.parse(policy);
        SnapshotTargets.FileTarget file = SnapshotTargets.file(to);
        if (file == null) {
            io.pagewire.transport.spi.Transports.provider(io.pagewire.transport.spi.TransportUri.parse(to));
        }
        if (guest.hugePages) {
            // Copy-before-write works page by page: a write-protect fault on a 2 MiB mapping is not what it was built for.
            throw new IllegalArgumentException("snapshot: --huge-pages is not supported (copy-before-write tracks 4 KiB pages)");
        }
        RegionSpec regionSpec = guest.regionSpec();
        SnapshotConfig config = new SnapshotConfig().policy(p).poolBytes(pool).writerThreads(writers).chunkPages(chunkPages)
                .copyBeforeWrite(!noCopyBeforeWrite).conclude(4096);
        PrintWriter out = spec.commandLine().getOut();
        try (GuestImage image = GuestImage.create(regionSpec, guest.zeroFraction, guest.balloonFraction, 1, false)) {
            GuestRegion region = image.region();
            String cause = SnapshotEngine.unavailabilityCause(List.of(region));
            if (cause != null) {
                throw new IllegalArgumentException("a live snapshot is not possible here: " + cause);
            }
            SyntheticGuest vcpus = new SyntheticGuest(region.memory(), region.pageSize(),
                    new SyntheticGuest.Config(guest.vcpus, guest.dirtyRate, pattern, guest.workingSet, 7, SyntheticGuest.Access.STAMP),
                    page -> !image.balloon().isBallooned(page)).start();
            try {
                long w0 = vcpus.writes();
                long t0 = System.nanoTime();
                LockSupport.parkNanos((long) (warmupSeconds * 1e9));
                double before = (vcpus.writes() - w0) / ((System.nanoTime() - t0) / 1e9);
                try (SnapshotSink sink = file != null
                        ? SnapshotFileWriter.create(file.path(), List.of(new SnapshotLayout.RegionSpec(region.name(), region.sizeBytes(),
                        region.pageSize())), file.storage())
                        : TransportSnapshotSink.connect(to, List.of(region))) {
                    long w1 = vcpus.writes();
                    long t1 = System.nanoTime();
                    try (SnapshotEngine engine = SnapshotEngine.start(List.of(region), image.balloons(), vcpus, sink, config, null)) {
                        engine.await();
                        double during = (vcpus.writes() - w1) / ((System.nanoTime() - t1) / 1e9);
                        report(out, engine.stats(), file, before, during, region.pageSize());
                    }
                }
            } finally {
                vcpus.close();
            }
        }
        return 0;
    }

    private void report(PrintWriter out, SnapshotStats s, SnapshotTargets.FileTarget file, double before, double during, long pageSize)
            throws java.io.IOException {
        Histogram h = s.faultLatency();
        if (hgrm != null) {
            try (PrintStream ps = new PrintStream(Files.newOutputStream(hgrm), true, StandardCharsets.UTF_8)) {
                h.outputPercentileDistribution(ps, 1000.0);
            }
        }
        if (json) {
            var o = io.pagewire.agent.Json.object();
            o.put("status", "completed");
            o.put("target", to);
            o.put("policy", policy);
            o.put("total-time-ms", io.pagewire.agent.Json.round(s.totalNs() / 1e6, 1));
            o.put("setup-time-ms", io.pagewire.agent.Json.round(s.setupNs() / 1e6, 2));
            o.put("data-pages", s.dataPages());
            o.put("zero-pages", s.zeroPages());
            o.put("fault-pages", s.faultPages());
            o.put("background-pages", s.backgroundPages());
            o.put("pool-waits", s.poolWaits());
            o.put("pool-high-water-pages", s.poolHighWater());
            var lat = o.putObject("fault-latency-us");
            lat.put("count", h.getTotalCount());
            lat.put("p50", io.pagewire.agent.Json.round(h.getValueAtPercentile(50) / 1e3, 1));
            lat.put("p99", io.pagewire.agent.Json.round(h.getValueAtPercentile(99) / 1e3, 1));
            lat.put("p99.9", io.pagewire.agent.Json.round(h.getValueAtPercentile(99.9) / 1e3, 1));
            lat.put("max", io.pagewire.agent.Json.round(h.getMaxValue() / 1e3, 1));
            o.put("guest-writes-per-sec-before", Math.round(before));
            o.put("guest-writes-per-sec-during", Math.round(during));
            out.println(io.pagewire.agent.Json.write(o));
        } else {
            out.println("snapshot of " + io.pagewire.transport.spi.Units.human(guest.ram) + " to " + (file != null ? file.path() + " (" + file.storage() + ")" : to)
                    + ", policy " + policy + ": " + s.summary());
            out.println("phases: " + s.phases());
            out.println(String.format(Locale.ROOT, "guest writes: %.0f pages/s (%.1f MiB/s) before, %.0f pages/s during the snapshot",
                    before, before * pageSize / (1 << 20), during));
        }
        out.println("SNAPSHOT completed");
        out.flush();
    }
}
