package io.pagewire.agent.cli;

import io.pagewire.agent.snapshot.SnapshotFile;
import io.pagewire.agent.snapshot.SnapshotLayout;
import io.pagewire.ramtracker.linux.Mappings;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code pagewire restore}: maps or loads a snapshot file as guest RAM and verifies it. */
@Command(name = "restore", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Restore a snapshot file as guest RAM: map it copy-on-write (MAP_PRIVATE: instant, each page read from the file",
                "when first touched) or, with --load, read it into fresh memory; then verify every page against its checksum.",
                "Exits 0 when verified, 1 on a checksum mismatch, 2 when the file is not a complete snapshot (torn, damaged)."})
final class RestoreCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Parameters(index = "0", paramLabel = "FILE", description = "the snapshot file")
    Path file;

    @Option(names = "--load", description = "read the pages into fresh anonymous memory instead of mapping the file")
    boolean load;

    @Option(names = "--no-verify", description = "skip the checksum verification")
    boolean noVerify;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        long t0 = System.nanoTime();
        try (SnapshotFile snap = SnapshotFile.open(file); Arena arena = Arena.ofShared()) {
            long opened = System.nanoTime();
            out.println(String.format(Locale.ROOT, "snapshot %s: %d region(s), %d data pages, %d zero pages; header and marker checked in %.1f ms",
                    file, snap.regions().size(), snap.dataPages(), snap.zeroPages(), (opened - t0) / 1e6));
            boolean ok = true;
            for (int i = 0; i < snap.regions().size(); i++) {
                SnapshotLayout.Region r = snap.regions().get(i);
                long a = System.nanoTime();
                MemorySegment memory;
                if (load) {
                    memory = Mappings.mapAnonymous(r.sizeBytes(), false, arena);
                    Mappings.adviseHugePages(memory); // fresh memory populates ~20x faster on huge pages here
                    snap.load(i, memory);
                } else {
                    memory = snap.mapPrivate(i, arena);
                }
                long b = System.nanoTime();
                out.println(String.format(Locale.ROOT, "region '%s' (%s): %s in %.1f ms", r.name(), io.pagewire.transport.spi.Units.human(r.sizeBytes()),
                        load ? "loaded into fresh memory" : "mapped MAP_PRIVATE", (b - a) / 1e6));
                if (!noVerify) {
                    SnapshotFile.Verification v = snap.verify(i, memory);
                    long c = System.nanoTime();
                    out.println(String.format(Locale.ROOT, "region '%s': verified %d pages in %.1f ms: %s", r.name(), v.pagesChecked(), (c - b) / 1e6,
                            v.ok() ? "ok" : v.mismatches() + " page(s) differ from their checksum, first page " + v.firstMismatch()));
                    ok &= v.ok();
                }
            }
            out.println(String.format(Locale.ROOT, "RESTORED %s in %.1f ms", ok ? "ok" : "with checksum mismatches", (System.nanoTime() - t0) / 1e6));
            out.flush();
            return ok ? ExitCode.SUCCESS.code() : ExitCode.VERIFICATION_MISMATCH.code();
        }
    }
}
