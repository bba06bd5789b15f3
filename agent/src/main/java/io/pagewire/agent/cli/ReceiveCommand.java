package io.pagewire.agent.cli;

import io.pagewire.agent.DestinationMigration;
import io.pagewire.agent.Json;
import io.pagewire.agent.MigrationStats;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.PeerText;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine;
import tools.jackson.databind.node.ObjectNode;

import java.time.Duration;
import java.util.concurrent.Callable;

/** {@code pagewire receive}: the destination side. */
@Command(name = "receive", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Listen on URI, receive one migration into RAM of the given size, and exit 0 when it completed",
                "(and, when the source asked, the RAM matched the source's)."})
final class ReceiveCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--listen", required = true, paramLabel = "URI",
            description = "where to listen, e.g. tcp://0.0.0.0:4444 (port 0 picks a free port; the URI is printed)")
    String listen;

    @Option(names = "--ram", defaultValue = "1G", paramLabel = "SIZE", description = "guest RAM size; must match the source (default ${DEFAULT-VALUE})")
    long ram;

    @Option(names = "--backing", defaultValue = "anonymous", paramLabel = "B",
            description = "RAM backing: anonymous (transparent huge pages, fast to populate) or memfd (default ${DEFAULT-VALUE})")
    String backing;

    @Option(names = "--accept-timeout", defaultValue = "600s", paramLabel = "TIME", converter = Converters.Seconds.class,
            description = "how long to wait for the source, e.g. 10min; a bare number is seconds (default ${DEFAULT-VALUE})")
    Duration acceptTimeout;

    @Option(names = "--populate", defaultValue = "hinted", paramLabel = "MODE",
            description = {"how RAM is populated: hinted (the chunks the source says hold data, in bulk, while receiving),",
                    "all (everything, while receiving), before (everything, before accepting: a pre-populated destination),",
                    "none (page writes fault it in) (default ${DEFAULT-VALUE})"})
    String populate;

    @Option(names = "--json", description = {"print the statistics as one JSON document on standard output (schema " + io.pagewire.agent.Json.STATS_SCHEMA + ");",
            "LISTENING, the outcome line and everything else go to standard error"})
    boolean json;

    @Option(names = "--stats-interval", paramLabel = "TIME", converter = Converters.Millis.class,
            description = "while receiving, write the statistics as a JSON line this often (e.g. 500ms; a bare number is ms) to --stats-file or standard error")
    Duration statsInterval;

    @Option(names = "--stats-file", paramLabel = "FILE", description = "where --stats-interval writes its JSON lines (default: standard error)")
    java.nio.file.Path statsFile;

    @Option(names = "--jit-warm-up", defaultValue = "64M", paramLabel = "SIZE",
            description = {"before listening, warm this JVM's data path with a loopback migration of SIZE inside it (unix socket in a",
                    "private directory), so the real one is received by JIT-compiled code; 0 = none (default ${DEFAULT-VALUE})"})
    long jitWarmUp;

    @Option(names = "--quiet", description = "print only LISTENING and the outcome")
    boolean quiet;

    @Option(names = "--postcopy", description = {"prepare for postcopy: RAM registered with userfaultfd once the source switches (anonymous:",
            "MISSING faults + UFFDIO_COPY; memfd: MINOR faults over a second mapping);",
            "a synthetic guest (--vcpus, --pattern, --working-set, --dirty-rate as its access rate) then runs here and reads its RAM"})
    boolean postcopy;

    @Option(names = "--postcopy-recovery-timeout", defaultValue = "60s", paramLabel = "TIME", converter = Converters.Seconds.class,
            description = {"postcopy: when the connection breaks, keep the guest's state and listen this long for the source to",
                    "resume the migration over a new connection (postcopy-paused); 0 = fail at once; a bare number is seconds (default ${DEFAULT-VALUE})"})
    Duration recoveryTimeout;

    @Option(names = "--vcpus", defaultValue = "1", paramLabel = "N", description = "postcopy guest: vCPU threads (default ${DEFAULT-VALUE})")
    int vcpus;

    @Option(names = "--pattern", defaultValue = "random", paramLabel = "P", description = "postcopy guest: access pattern (default ${DEFAULT-VALUE})")
    String pattern;

    @Option(names = "--working-set", defaultValue = "256M", paramLabel = "SIZE", description = "postcopy guest: pages it reads (default ${DEFAULT-VALUE})")
    long workingSet;

    @Option(names = "--dirty-rate", defaultValue = "64M", paramLabel = "BYTES_PER_SEC",
            description = "postcopy guest: bytes of pages read per second, 0 = as fast as it can (default ${DEFAULT-VALUE})")
    long rate;

    @Option(names = "--hgrm", paramLabel = "FILE", description = "postcopy: write the fault-latency histogram (HdrHistogram percentiles, us) here")
    java.nio.file.Path hgrm;

    @Option(names = "--fault-latency-log", paramLabel = "FILE", description = {"postcopy: write fault latency over time here as an HdrHistogram",
            "interval log (HistogramLogWriter, us), one histogram per --stats-interval (default 1 s)"})
    java.nio.file.Path faultLatencyLog;

    @Option(names = "--snapshot", paramLabel = "FILE",
            description = {"receive a live snapshot ('pagewire snapshot --to URI') and write it to FILE in the snapshot format",
                    "(region pc.ram of --ram bytes); exits 0 once the file is complete"})
    java.nio.file.Path snapshot;

    @Option(names = "--replica", description = {"be the secondary of checkpoint replication ('pagewire replicate --to URI', docs/replication.md):",
            "pages land in a RAM cache, each complete checkpoint is applied to this side's guest (--vcpus, --pattern, --working-set,",
            "--dirty-rate as its write rate); when the primary dies, the guest takes over from the last complete checkpoint"})
    boolean replica;

    @Option(names = "--replica-apply", defaultValue = "dirty", paramLabel = "MODE",
            description = {"replica: copy only dirtied pages while paused (dirty), the whole cache (whole, for comparison), or resume first and",
                    "fill the dirtied pages on fault and in the background (lazy, userfaultfd MINOR) (default ${DEFAULT-VALUE})"})
    String replicaApply;

    @Option(names = "--debug-hold-fill", hidden = true, defaultValue = "0", paramLabel = "EPOCH",
            description = "test hook (replica, lazy): stop the fill of this checkpoint part way until the primary is gone (prints FILL-HOLD EPOCH)")
    long holdFillEpoch;

    @Option(names = "--debug-repeat", hidden = true, defaultValue = "1", paramLabel = "N",
            description = {"test hook for the hostile source (conformance/hostile_source.py): receive up to N migrations one after",
                    "another on one listener, each into zeroed RAM, with an outcome line each"})
    int repeat;

    @Option(names = "--debug-ram-report", hidden = true, paramLabel = "FILE",
            description = {"test hook for the hostile source: after each migration, append to FILE one JSON line with its outcome",
                    "and every non-zero page of pc.ram with its CRC32C (before the outcome line is printed)"})
    java.nio.file.Path ramReport;

    @Override
    public Integer call() throws Exception {
        // With --json, standard output carries the one JSON document and nothing else.
        java.io.PrintWriter text = json ? spec.commandLine().getErr() : spec.commandLine().getOut();
        if (faultLatencyLog != null && !postcopy) {
            throw new IllegalArgumentException("--fault-latency-log records postcopy faults: it needs --postcopy");
        }
        if (statsInterval != null && (statsInterval.isZero() || statsInterval.isNegative())) {
            throw new IllegalArgumentException("--stats-interval " + statsInterval.toMillis() + " ms: give a positive interval, e.g. 500ms");
        }
        if (snapshot != null) {
            return receiveSnapshot();
        }
        if (replica) {
            return ReplicaReceive.run(this, spec.commandLine().getOut());
        }
        boolean debugLoop = repeat != 1 || ramReport != null;
        if (repeat < 1) {
            throw new IllegalArgumentException("--debug-repeat " + repeat + ": give at least 1");
        }
        if (debugLoop && (postcopy || json)) {
            throw new IllegalArgumentException("--debug-repeat and --debug-ram-report take neither --postcopy nor --json");
        }
        SourceRunner.warmUp(jitWarmUp, spec.commandLine().getErr(), null);
        RegionSpec region = switch (backing) {
            // Postcopy on anonymous memory uses MISSING faults + UFFDIO_COPY (measured faster); on a memfd, MINOR faults.
            case "anonymous" -> RegionSpec.anonymous("pc.ram", ram).hugePages(!postcopy);
            case "memfd" -> RegionSpec.memfd("pc.ram", ram);
            default -> throw new IllegalArgumentException("--backing " + backing + " is not one of anonymous, memfd");
        };
        try (GuestRam guestRam = GuestRam.create()) {
            io.pagewire.ramtracker.GuestRegion pcRam = guestRam.open(region);
            if (debugLoop) {
                return receiveRepeatedly(guestRam, pcRam, text, populateMode());
            }
            java.util.concurrent.atomic.AtomicReference<io.pagewire.agent.guest.SyntheticGuest> guest = new java.util.concurrent.atomic.AtomicReference<>();
            try (DestinationMigration dst = new DestinationMigration(guestRam, postcopy); Listener l = dst.listen(guestRam, listen)) {
                if (postcopy) {
                    io.pagewire.agent.guest.SyntheticGuest.Pattern p;
                    try {
                        p = io.pagewire.agent.guest.SyntheticGuest.Pattern.valueOf(pattern.toUpperCase(java.util.Locale.ROOT));
                    } catch (IllegalArgumentException e) {
                        throw new IllegalArgumentException("--pattern " + pattern + " is not one of idle, sequential, random, hotset");
                    }
                    io.pagewire.agent.guest.SyntheticGuest.Pattern pat = p;
                    dst.onPostcopyStart(() -> {
                        io.pagewire.agent.guest.SyntheticGuest g = new io.pagewire.agent.guest.SyntheticGuest(pcRam.memory().asSlice(0, ram),
                                pcRam.pageSize(), new io.pagewire.agent.guest.SyntheticGuest.Config(vcpus, rate, pat, workingSet, 7,
                                io.pagewire.agent.guest.SyntheticGuest.Access.READ), page -> true);
                        guest.set(g.start());
                        try {
                            return g.vcpuThreadIds();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                            return new int[0];
                        }
                    });
                }
                DestinationMigration.Populate mode = populateMode();
                dst.postcopyRecoveryTimeout(recoveryTimeout);
                dst.startPopulating(mode);
                text.println("LISTENING " + l.uri());
                text.flush();
                MigrationStats stats;
                try (StatsTicker ticker = StatsTicker.start(dst.stats(), statsInterval, statsFile, spec.commandLine().getErr());
                     FaultLatencyLog faults = postcopy ? FaultLatencyLog.start(dst, faultLatencyLog, statsInterval) : null) {
                    stats = dst.receive(l, acceptTimeout);
                } finally {
                    if (guest.get() != null) {
                        dst.releaseGuestMemory(); // a vCPU blocked on a page that never came must be let go first
                        guest.get().close();
                    }
                }
                if (hgrm != null && postcopy) {
                    try (java.io.PrintStream ps = new java.io.PrintStream(java.nio.file.Files.newOutputStream(hgrm), true, java.nio.charset.StandardCharsets.UTF_8)) {
                        dst.faultLatency().outputPercentileDistribution(ps, 1000.0);
                    }
                }
                if (postcopy && !quiet && !json) {
                    text.println("postcopy: " + dst.postcopyStatsJson());
                }
                Outcome outcome = Outcome.of(stats, dst.verification());
                boolean ok = outcome.ok();
                if (json) {
                    var doc = stats.toJson();
                    if (postcopy) {
                        doc.set("postcopy", dst.postcopyStatsNode());
                    }
                    if (dst.verification() != null) { // absent when the source did not ask for verification
                        doc.put("verification", dst.verification());
                    }
                    spec.commandLine().getOut().println(io.pagewire.agent.Json.write(doc));
                    spec.commandLine().getOut().flush();
                } else if (!quiet) {
                    spec.commandLine().getOut().println(stats.infoMigrate());
                }
                text.println(outcome.line());
                return outcome.code();
            }
        }
    }

    /** How a migration ended: success, the outcome line ({@code RECEIVED ...} or {@code FAILED ...}) and the exit code. */
    private record Outcome(boolean ok, String line, int code) {
        static Outcome of(MigrationStats stats, String verification) {
            boolean ok = stats.status() == MigrationStats.Status.COMPLETED && (verification == null || verification.equals("verified"));
            // Reasons and verdicts may carry the source's text: escaped (terminal output; the JSON document has its own quoting).
            String line = ok ? "RECEIVED " + (verification == null ? "completed" : PeerText.escape(verification))
                    : "FAILED " + PeerText.escape(stats.errorDesc() != null ? stats.errorDesc() : verification);
            return new Outcome(ok, line, ok ? ExitCode.SUCCESS.code() : stats.status() == MigrationStats.Status.COMPLETED
                    ? ExitCode.VERIFICATION_MISMATCH.code() : ExitCode.of(stats, null).code());
        }
    }

    /**
     * {@code --debug-repeat} / {@code --debug-ram-report}: migrations one after another on one listener, each by a new
     * {@link DestinationMigration} into RAM that is zero again (what a fresh {@code receive} has), each with its outcome
     * line and, first, its RAM report. For the hostile source (conformance/hostile_source.py), which would otherwise
     * start a JVM per mutated stream. Ends after N migrations or when no source came within --accept-timeout.
     *
     * @return the exit code of the last migration
     */
    private int receiveRepeatedly(GuestRam guestRam, io.pagewire.ramtracker.GuestRegion pcRam, java.io.PrintWriter text,
                                  DestinationMigration.Populate mode) throws Exception {
        int code = ExitCode.SUCCESS.code();
        try (Listener l = io.pagewire.transport.spi.Transports.listen(listen,
                new io.pagewire.transport.spi.TransportContext().layout(DestinationMigration.layout(guestRam)))) {
            text.println("LISTENING " + l.uri());
            text.flush();
            for (int i = 1; i <= repeat; i++) {
                MigrationStats stats;
                String verification;
                try (DestinationMigration dst = new DestinationMigration(guestRam)) {
                    dst.startPopulating(mode);
                    stats = dst.receive(l, acceptTimeout); // its connection is closed, its threads are gone
                    verification = dst.verification();
                }
                Outcome outcome = Outcome.of(stats, verification);
                if (ramReport != null) {
                    ObjectNode report = RamReport.of(pcRam, i, outcome.line());
                    java.nio.file.Files.writeString(ramReport, io.pagewire.agent.Json.write(report) + "\n", java.nio.charset.StandardCharsets.UTF_8,
                            java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
                    RamReport.zeroReported(pcRam, report);
                }
                text.println(outcome.line());
                text.flush();
                code = outcome.code();
            }
        }
        return code;
    }

    private DestinationMigration.Populate populateMode() {
        try {
            return DestinationMigration.Populate.valueOf(populate.toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--populate " + populate + " is not one of hinted, all, before, none");
        }
    }

    private int receiveSnapshot() throws InterruptedException {
        java.util.List<io.pagewire.agent.snapshot.SnapshotLayout.RegionSpec> regions = java.util.List.of(
                new io.pagewire.agent.snapshot.SnapshotLayout.RegionSpec("pc.ram", ram, io.pagewire.ramtracker.linux.Linux.basePageSize()));
        long t0;
        long pages;
        try (io.pagewire.agent.snapshot.SnapshotReceiver r = new io.pagewire.agent.snapshot.SnapshotReceiver(snapshot, regions,
                io.pagewire.agent.snapshot.StorageOptions.NONE); Listener l = r.listen(listen)) {
            spec.commandLine().getOut().println("LISTENING " + l.uri());
            spec.commandLine().getOut().flush();
            t0 = System.nanoTime();
            pages = r.receive(l, acceptTimeout);
        }
        spec.commandLine().getOut().println(String.format(java.util.Locale.ROOT, "RECEIVED snapshot %s: %d data pages in %.1f ms", snapshot, pages,
                (System.nanoTime() - t0) / 1e6));
        spec.commandLine().getOut().flush();
        return 0;
    }
}
