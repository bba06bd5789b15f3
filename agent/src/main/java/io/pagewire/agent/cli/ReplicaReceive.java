package io.pagewire.agent.cli;

import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.agent.replica.ReplicaSecondary;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.PeerText;

import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;

/** {@code pagewire receive --replica}: the secondary of checkpoint replication (docs/replication.md). */
final class ReplicaReceive {
    private ReplicaReceive() {
    }

    static int run(ReceiveCommand cmd, PrintWriter out) throws InterruptedException {
        ReplicaSecondary.Apply apply = switch (cmd.replicaApply) {
            case "dirty" -> ReplicaSecondary.Apply.DIRTY;
            case "whole" -> ReplicaSecondary.Apply.WHOLE;
            case "lazy" -> ReplicaSecondary.Apply.LAZY;
            default -> throw new IllegalArgumentException("--replica-apply " + cmd.replicaApply + " is not one of dirty, whole, lazy");
        };
        SyntheticGuest.Pattern pattern;
        try {
            pattern = SyntheticGuest.Pattern.valueOf(cmd.pattern.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--pattern " + cmd.pattern + " is not one of idle, sequential, random, hotset");
        }
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion region = ram.open(RegionSpec.memfd("pc.ram", cmd.ram));
            // The secondary's guest writes from native code: its RAM is under synchronous write-protection.
            try (SyntheticGuest guest = new SyntheticGuest(region.memory().asSlice(0, region.sizeBytes()), region.pageSize(),
                    new SyntheticGuest.Config(cmd.vcpus, cmd.rate, pattern, cmd.workingSet, 11, SyntheticGuest.Access.STAMP), page -> true);
                 ReplicaSecondary secondary = new ReplicaSecondary(List.of(region), guest, apply);
                 Listener l = secondary.listen(cmd.listen)) {
                if (cmd.holdFillEpoch > 0) {
                    secondary.holdFill(cmd.holdFillEpoch, () -> {
                        out.println("FILL-HOLD " + cmd.holdFillEpoch);
                        out.flush();
                    });
                }
                out.println("LISTENING " + l.uri());
                out.flush();
                guest.start();
                ReplicaSecondary.Result r = secondary.run(l, cmd.acceptTimeout, epoch -> {
                    if (!cmd.quiet) {
                        out.println(String.format(Locale.ROOT, "APPLIED %d cache-copy-ms=%.3f%s", epoch, secondary.lastApplyNs() / 1e6,
                                apply == ReplicaSecondary.Apply.LAZY ? String.format(Locale.ROOT, " fill-ms=%.3f", secondary.lastFillNs() / 1e6) : ""));
                        out.flush();
                    }
                });
                if (r.failover()) {
                    // The guest is paused at the last complete checkpoint: report it, then it would run as the new primary.
                    out.println(String.format(Locale.ROOT, "FAILOVER epoch=%d crc=%s reason=%s", r.epoch(), Long.toHexString(secondary.checksum()),
                            PeerText.escape(r.reason())));
                    out.flush();
                    guest.resume();
                } else {
                    out.println("REPLICA ended at checkpoint " + r.epoch() + ": " + r.reason());
                    out.flush();
                }
                return ExitCode.SUCCESS.code();
            }
        }
    }
}
