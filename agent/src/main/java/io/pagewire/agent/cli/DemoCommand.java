package io.pagewire.agent.cli;

import io.pagewire.agent.ChildJvm;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/** {@code pagewire demo}: a destination JVM, a live synthetic guest in this JVM, a verified migration over loopback. */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Start a destination JVM, run a synthetic guest here and migrate it live over loopback.",
                "Verifies the destination's RAM against the source's after switchover; exits 1 when they differ or the migration fails."})
final class DemoCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--uri", defaultValue = "tcp://127.0.0.1:0", paramLabel = "URI",
            description = "listen URI of the destination; port 0 picks a free port (default ${DEFAULT-VALUE})")
    String uri;

    @Option(names = "--dst-backing", defaultValue = "anonymous", paramLabel = "B",
            description = "destination RAM: anonymous (transparent huge pages, fast to populate) or memfd (default ${DEFAULT-VALUE})")
    String dstBacking;

    @Option(names = "--dst-populate", defaultValue = "hinted", paramLabel = "MODE",
            description = "destination RAM population: hinted, all, before or none (see 'receive --help') (default ${DEFAULT-VALUE})")
    String dstPopulate;

    @Option(names = "--hgrm", paramLabel = "FILE", description = "with --postcopy: write the destination's fault-latency histogram here (.hgrm)")
    java.nio.file.Path hgrm;

    @Mixin
    GuestOptions guest;

    @Mixin
    MigrateOptions migrate;

    @Override
    public Integer call() throws Exception {
        Phases phases = new Phases(); // jvm-start: everything before this line
        guest.pattern(); // validate before starting anything
        guest.regionSpec().conclude();
        migrate.config();
        io.pagewire.transport.spi.Transports.provider(io.pagewire.transport.spi.TransportUri.parse(uri));
        List<String> receive = new java.util.ArrayList<>(List.of("receive", "--listen", uri, "--ram", Long.toString(guest.ram),
                "--backing", dstBacking, "--populate", dstPopulate, "--jit-warm-up", Long.toString(migrate.jitWarmUp), "--quiet"));
        if (migrate.postcopy) {
            receive.addAll(List.of("--postcopy", "--vcpus", Integer.toString(guest.vcpus), "--pattern", guest.pattern,
                    "--working-set", Long.toString(guest.workingSet), "--dirty-rate", Long.toString(guest.dirtyRate),
                    "--postcopy-recovery-timeout", migrate.postcopyRecoveryTimeout.toMillis() + "ms"));
            if (hgrm != null) {
                receive.addAll(List.of("--hgrm", hgrm.toAbsolutePath().toString()));
            }
        }
        ChildJvm.Started dst = ChildJvm.start(receive, "LISTENING ", migrate.json ? System.err : System.out); // --json: stdout is the document
        phases.mark("destination-start");
        try {
            String target = dst.line().substring("LISTENING ".length());
            // With --json, standard output carries the one JSON document; this line goes to standard error.
            java.io.PrintWriter text = migrate.json ? spec.commandLine().getErr() : spec.commandLine().getOut();
            text.println("destination pid " + dst.process().pid() + " listening on " + target + "; migrating "
                    + io.pagewire.transport.spi.Units.human(guest.ram) + " with " + guest.vcpus + " vCPU(s) writing "
                    + io.pagewire.transport.spi.Units.human(guest.dirtyRate) + "/s (" + guest.pattern + " over "
                    + io.pagewire.transport.spi.Units.human(guest.workingSet) + ")");
            text.flush();
            int rc = SourceRunner.run(spec.commandLine().getOut(), spec.commandLine().getErr(), guest, migrate, target, phases);
            boolean exited = dst.process().waitFor(60, TimeUnit.SECONDS);
            if (rc == 0 && (!exited || dst.process().exitValue() != 0)) {
                spec.commandLine().getErr().println("pagewire: the destination did not report success (exit "
                        + (exited ? dst.process().exitValue() : "none") + ")");
                return ExitCode.MIGRATION_FAILED.code();
            }
            return rc;
        } finally {
            dst.process().destroyForcibly();
        }
    }
}
