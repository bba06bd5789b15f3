package io.pagewire.agent.cli;

import io.pagewire.agent.MigrationConfig;
import picocli.CommandLine.Option;

import java.util.Locale;
import java.time.Duration;

/** Options of the source side of a migration (demo and send). */
final class MigrateOptions {
    @Option(names = "--downtime-limit", defaultValue = "300ms", paramLabel = "TIME", converter = Converters.Millis.class,
            description = "longest acceptable downtime, e.g. 300ms, 1s; a bare number is ms (default ${DEFAULT-VALUE}, as QEMU)")
    Duration downtimeLimit;

    @Option(names = "--max-rounds", defaultValue = "10", paramLabel = "N",
            description = "precopy rounds before --policy applies (default ${DEFAULT-VALUE})")
    int maxRounds;

    @Option(names = "--max-time", defaultValue = "0", paramLabel = "TIME", converter = Converters.Millis.class,
            description = "time before --policy applies, e.g. 30s; a bare number is ms; 0 = none (default ${DEFAULT-VALUE})")
    Duration maxTime;

    @Option(names = "--policy", defaultValue = "throttle", paramLabel = "P",
            description = "when precopy does not converge: force, cancel or throttle (auto-converge) (default ${DEFAULT-VALUE})")
    String policy;

    @Option(names = "--max-bandwidth", defaultValue = "0", paramLabel = "BYTES_PER_SEC",
            description = "cap on page data sent per second, 0 = none (default ${DEFAULT-VALUE})")
    long maxBandwidth;

    @Option(names = "--verify", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "compare the destination's RAM with the source's after completion (default: on)")
    boolean verify;

    @Option(names = "--postcopy", description = "allow postcopy: when precopy does not converge (or after --postcopy-after-rounds) the guest"
            + " starts on the destination and pulls its missing pages on demand (the destination needs 'receive --postcopy')")
    boolean postcopy;

    @Option(names = "--postcopy-after-rounds", defaultValue = "-1", paramLabel = "N",
            description = "with --postcopy: switch after N precopy rounds; 0 = at once; -1 = only when precopy does not converge (default ${DEFAULT-VALUE})")
    int postcopyAfterRounds;

    @Option(names = "--postcopy-recovery-timeout", defaultValue = "60s", paramLabel = "TIME", converter = Converters.Seconds.class,
            description = {"with --postcopy: when the connection breaks during postcopy, both sides keep their state (postcopy-paused)",
                    "and the source reconnects on its own for this long; 0 = no recovery, the migration fails; a bare number is seconds (default ${DEFAULT-VALUE})"})
    Duration postcopyRecoveryTimeout;

    @Option(names = "--monitor-stdio", description = {"read monitor commands from standard input, one per line (as QEMU's -monitor stdio):",
            "migrate-start-postcopy (switch to postcopy now), migrate-resume [URI] (postcopy-paused: reconnect now, optionally",
            "to another destination address), migrate-cancel, info"})
    boolean monitorStdio;

    @Option(names = "--jit-warm-up", defaultValue = "64M", paramLabel = "SIZE",
            description = {"before the migration, warm this JVM's data path with a loopback migration of SIZE inside it (unix socket",
                    "in a private directory), so the real one runs JIT-compiled from its first page; 0 = none (default ${DEFAULT-VALUE})"})
    long jitWarmUp;

    @Option(names = "--json", description = {"print the statistics as one JSON document on standard output (schema " + io.pagewire.agent.Json.STATS_SCHEMA + ");",
            "everything else goes to standard error"})
    boolean json;

    @Option(names = "--stats-interval", paramLabel = "TIME", converter = Converters.Millis.class,
            description = "while migrating, write the statistics as a JSON line this often (e.g. 500ms; a bare number is ms) to --stats-file or standard error")
    Duration statsInterval;

    @Option(names = "--stats-file", paramLabel = "FILE", description = "where --stats-interval writes its JSON lines (default: standard error)")
    java.nio.file.Path statsFile;

    MigrationConfig config() {
        if (statsInterval != null && (statsInterval.isZero() || statsInterval.isNegative())) {
            throw new IllegalArgumentException("--stats-interval " + statsInterval.toMillis() + " ms: give a positive interval, e.g. 500ms");
        }
        MigrationConfig.Policy p;
        try {
            p = MigrationConfig.Policy.valueOf(policy.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--policy " + policy + " is not one of force, cancel, throttle");
        }
        return new MigrationConfig().downtimeLimitNs(downtimeLimit.toNanos()).maxRounds(maxRounds)
                .maxTimeNs(maxTime.toNanos()).policy(p).maxBandwidthBytesPerSec(maxBandwidth).verify(verify)
                .postcopy(postcopy).postcopyAfterRounds(postcopy ? postcopyAfterRounds : -1)
                .postcopyRecoveryTimeoutNs(postcopyRecoveryTimeout.toNanos()).conclude();
    }
}
