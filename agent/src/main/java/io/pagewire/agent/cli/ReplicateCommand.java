package io.pagewire.agent.cli;

import io.pagewire.agent.Json;
import io.pagewire.agent.guest.GuestImage;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.agent.replica.ReplicationConfig;
import io.pagewire.agent.replica.ReplicationException;
import io.pagewire.agent.replica.ReplicationPrimary;
import io.pagewire.agent.replica.ReplicationStats;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/** {@code pagewire replicate}: the primary of checkpoint replication (docs/replication.md). */
@Command(name = "replicate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run a synthetic guest and replicate its RAM to 'pagewire receive --replica' (COLO-style checkpoints): an",
                "initial sync while the guest runs, then a checkpoint every --interval and on demand ('checkpoint' on standard",
                "input), with dirty pages sent in the background between checkpoints. Prints 'CHECKPOINT EPOCH ...' per checkpoint."})
final class ReplicateCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--to", required = true, paramLabel = "URI", description = "the secondary, e.g. tcp://host:4444")
    String to;

    @Option(names = "--interval", defaultValue = "1000ms", paramLabel = "TIME", converter = Converters.Millis.class,
            description = "time between checkpoints, e.g. 100ms; 0 = only on demand (default ${DEFAULT-VALUE})")
    Duration interval;

    @Option(names = "--rate-limit", defaultValue = "0", paramLabel = "BYTES_PER_SEC",
            description = "cap on the background page rate between checkpoints, e.g. 256M; 0 = none (default ${DEFAULT-VALUE})")
    long rateLimit;

    @Option(names = "--design", defaultValue = "background", paramLabel = "D",
            description = {"background (dirty pages flow between checkpoints) or pause-all (everything at the pause, the seed's",
                    "problem, for comparison) (default ${DEFAULT-VALUE})"})
    String design;

    @Option(names = "--duration", paramLabel = "TIME", converter = Converters.Seconds.class,
            description = "stop after this long (default: until 'quit' on standard input)")
    Duration duration;

    @Option(names = "--checksums", description = "print the CRC32C of guest RAM at every checkpoint (computed while paused: lengthens the pause)")
    boolean checksums;

    @Option(names = "--verbose", description = "print a BACKGROUND line per background pass")
    boolean verbose;

    @Option(names = "--json", description = "print the statistics as one JSON document (schema " + ReplicationStats.SCHEMA + ") at the end")
    boolean json;

    @Option(names = "--debug-hold-checkpoint", hidden = true, defaultValue = "0", paramLabel = "EPOCH",
            description = "test hook: hold inside this checkpoint (from 1; 0 = never) after its pages, before its marker (prints HOLD EPOCH)")
    long holdEpoch;

    @Mixin
    GuestOptions guest;

    @Override
    public Integer call() throws Exception {
        Transports.provider(TransportUri.parse(to));
        ReplicationConfig.Design d = switch (design) {
            case "background" -> ReplicationConfig.Design.BACKGROUND;
            case "pause-all" -> ReplicationConfig.Design.PAUSE_ALL;
            default -> throw new IllegalArgumentException("--design " + design + " is not one of background, pause-all");
        };
        ReplicationConfig config = new ReplicationConfig().intervalNs(interval.toNanos()).rateLimitBytesPerSec(rateLimit)
                .design(d).checksums(checksums).conclude();
        PrintWriter out = spec.commandLine().getOut();
        try (GuestImage image = GuestImage.create(guest.regionSpec(), guest.zeroFraction, 0, 1, false);
             SyntheticGuest vcpus = new SyntheticGuest(image.region().memory().asSlice(0, image.region().sizeBytes()), image.region().pageSize(),
                     new SyntheticGuest.Config(guest.vcpus, guest.dirtyRate, guest.pattern(), guest.workingSet, 7), page -> true)) {
            vcpus.start();
            ReplicationPrimary.Events events = new ReplicationPrimary.Events() {
                @Override
                public void onCheckpoint(long epoch, long pauseNs, long crc) {
                    out.println(String.format(Locale.ROOT, "CHECKPOINT %d pause-ms=%.3f%s", epoch, pauseNs / 1e6,
                            crc >= 0 ? " crc=" + Long.toHexString(crc) : ""));
                    out.flush();
                }

                @Override
                public void onHold(long epoch) {
                    out.println("HOLD " + epoch);
                    out.flush();
                }
            };
            try (ReplicationPrimary primary = ReplicationPrimary.connect(to, List.of(image.region()), vcpus, config, events)) {
                if (holdEpoch > 0) {
                    primary.holdInCheckpoint(holdEpoch);
                }
                Thread.ofPlatform().daemon().name("pagewire-commands").start(() -> commands(primary));
                if (duration != null) {
                    Thread.ofPlatform().daemon().name("pagewire-duration").start(() -> {
                        try {
                            TimeUnit.NANOSECONDS.sleep(duration.toNanos());
                        } catch (InterruptedException e) {
                            return;
                        }
                        primary.stop();
                    });
                }
                if (verbose) {
                    Thread.ofPlatform().daemon().name("pagewire-background").start(() -> background(primary, out));
                }
                try {
                    primary.run();
                } catch (ReplicationException e) {
                    spec.commandLine().getErr().println("FAILED " + PeerText.escape(e.getMessage()));
                    spec.commandLine().getErr().flush();
                    return ExitCode.TRANSPORT_ERROR.code();
                }
                ReplicationStats s = primary.stats();
                if (json) {
                    out.println(Json.write(s.toJson()));
                } else {
                    out.println(String.format(Locale.ROOT, "REPLICATED %d checkpoints, pause p50 %.3f ms p99 %.3f ms max %.3f ms, initial-sync pause %.3f ms",
                            s.checkpoints(), s.pauseNs().getValueAtPercentile(50) / 1e6, s.pauseNs().getValueAtPercentile(99) / 1e6,
                            s.pauseNs().getMaxValue() / 1e6, s.initialSyncPauseNs() / 1e6));
                }
                out.flush();
            }
        }
        return ExitCode.SUCCESS.code();
    }

    /** The monitor on standard input: 'checkpoint' takes one now, 'quit' stops. */
    private static void commands(ReplicationPrimary primary) {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                switch (line.trim()) {
                    case "checkpoint" -> primary.requestCheckpoint();
                    case "quit", "stop" -> primary.stop();
                    case "" -> { }
                    default -> System.err.println("unknown command '" + PeerText.escape(line) + "': checkpoint, quit");
                }
            }
        } catch (java.io.IOException e) {
            System.err.println("standard input failed: " + e.getMessage() + "; commands are off");
        }
    }

    private static void background(ReplicationPrimary primary, PrintWriter out) {
        long seen = 0;
        while (true) {
            try {
                TimeUnit.MILLISECONDS.sleep(20);
            } catch (InterruptedException e) {
                return;
            }
            long now = primary.stats().backgroundPages();
            if (now != seen) {
                out.println("BACKGROUND pages=" + now);
                out.flush();
                seen = now;
            }
        }
    }
}
