package io.pagewire.agent.cli;

import io.pagewire.agent.GuestControl;
import io.pagewire.agent.SourceMigration;
import io.pagewire.agent.snapshot.SnapshotFile;
import io.pagewire.agent.snapshot.SnapshotLayout;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
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
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code pagewire restore}: maps or loads a snapshot file as guest RAM and verifies it. */
@Command(name = "restore", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Restore a snapshot file as guest RAM: map it copy-on-write (MAP_PRIVATE: instant, each page read from the file",
                "when first touched) or, with --load, read it into fresh memory; then verify every page against its checksum.",
                "With --to URI, the restored RAM is then migrated onward to a 'pagewire receive' there, as a stopped guest.",
                "Exits 0 when verified (and, with --to, migrated), 1 on a checksum mismatch or a failed migration, 2 when the file is",
                "not a complete snapshot (torn, damaged)."})
final class RestoreCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Parameters(index = "0", paramLabel = "FILE", description = "the snapshot file")
    Path file;

    @Option(names = "--load", description = "read the pages into fresh anonymous memory instead of mapping the file")
    boolean load;

    @Option(names = "--to", paramLabel = "URI", description = {"then migrate the restored RAM onward to a destination listening on URI",
            "(see 'pagewire receive'): the image is loaded into fresh memfd memory (--load is implied) and sent as a stopped",
            "guest (no vCPU writes: one pass, then completion); the migration options below apply"})
    String to;

    /** The migration options; its {@code --verify}/{@code --no-verify} also decides whether the image's checksums are checked. */
    @CommandLine.Mixin
    MigrateOptions migrate;

    /** A restored image has no vCPUs: nothing to pause, resume or slow. */
    private static final GuestControl STOPPED = new GuestControl() {
        @Override
        public void pause() {
        }

        @Override
        public void resume() {
        }

        @Override
        public void throttle(int percent) {
        }
    };

    @Override
    public Integer call() {
        if (to != null) {
            migrate.config();
            // A malformed URI or unknown option is a usage error: say so before anything is loaded.
            io.pagewire.transport.spi.Transports.provider(io.pagewire.transport.spi.TransportUri.parse(to));
        }
        // With --to --json, standard output carries the migration's one JSON document and nothing else.
        PrintWriter out = to != null && migrate.json ? spec.commandLine().getErr() : spec.commandLine().getOut();
        long t0 = System.nanoTime();
        try (SnapshotFile snap = SnapshotFile.open(file); Arena arena = Arena.ofShared(); GuestRam onward = to != null ? GuestRam.create() : null) {
            long opened = System.nanoTime();
            out.println(String.format(Locale.ROOT, "snapshot %s: %d region(s), %d data pages, %d zero pages; header and marker checked in %.1f ms",
                    file, snap.regions().size(), snap.dataPages(), snap.zeroPages(), (opened - t0) / 1e6));
            boolean ok = true;
            for (int i = 0; i < snap.regions().size(); i++) {
                SnapshotLayout.Region r = snap.regions().get(i);
                long a = System.nanoTime();
                MemorySegment memory;
                if (onward != null) {
                    GuestRegion g = onward.open(RegionSpec.memfd(r.name(), r.sizeBytes()));
                    memory = g.memory().asSlice(0, r.sizeBytes());
                    snap.load(i, memory);
                } else if (load) {
                    memory = Mappings.mapAnonymous(r.sizeBytes(), false, arena);
                    Mappings.adviseHugePages(memory); // fresh memory populates ~20x faster on huge pages here
                    snap.load(i, memory);
                } else {
                    memory = snap.mapPrivate(i, arena);
                }
                long b = System.nanoTime();
                out.println(String.format(Locale.ROOT, "region '%s' (%s): %s in %.1f ms", r.name(), io.pagewire.transport.spi.Units.human(r.sizeBytes()),
                        onward != null ? "loaded into fresh memfd memory" : load ? "loaded into fresh memory" : "mapped MAP_PRIVATE", (b - a) / 1e6));
                if (migrate.verify) {
                    SnapshotFile.Verification v = snap.verify(i, memory);
                    long c = System.nanoTime();
                    out.println(String.format(Locale.ROOT, "region '%s': verified %d pages in %.1f ms: %s", r.name(), v.pagesChecked(), (c - b) / 1e6,
                            v.ok() ? "ok" : v.mismatches() + " page(s) differ from their checksum, first page " + v.firstMismatch()));
                    ok &= v.ok();
                }
            }
            out.println(String.format(Locale.ROOT, "RESTORED %s in %.1f ms", ok ? "ok" : "with checksum mismatches", (System.nanoTime() - t0) / 1e6));
            out.flush();
            if (!ok) {
                return ExitCode.VERIFICATION_MISMATCH.code(); // never send a damaged image onward
            }
            if (onward == null) {
                return ExitCode.SUCCESS.code();
            }
            out.println("migrating onward to " + to);
            out.flush();
            SourceMigration migration = new SourceMigration(onward, STOPPED, Map.of(), migrate.config());
            return SourceRunner.migrate(spec.commandLine().getOut(), spec.commandLine().getErr(), migrate, migration, to, null);
        }
    }
}
