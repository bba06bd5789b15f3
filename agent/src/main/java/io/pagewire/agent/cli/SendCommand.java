package io.pagewire.agent.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** {@code pagewire send}: the source side, with a synthetic guest. */
@Command(name = "send", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run a synthetic guest and migrate it live to a destination listening on URI (see 'pagewire receive').",
                "With --monitor-stdio, monitor commands come from standard input (migrate-start-postcopy, migrate-resume, ...)."})
final class SendCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--to", required = true, paramLabel = "URI", description = "the destination, e.g. tcp://dst:4444?channels=2")
    String to;

    @Mixin
    GuestOptions guest;

    @Mixin
    MigrateOptions migrate;

    @Override
    public Integer call() {
        guest.pattern();
        migrate.config();
        // A malformed URI or unknown option is a usage error: say so before any guest starts.
        io.pagewire.transport.spi.Transports.provider(io.pagewire.transport.spi.TransportUri.parse(to));
        return SourceRunner.run(spec.commandLine().getOut(), spec.commandLine().getErr(), guest, migrate, to);
    }
}
