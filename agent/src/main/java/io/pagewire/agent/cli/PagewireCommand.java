package io.pagewire.agent.cli;

import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.TransportException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code pagewire} command and its subcommands. */
@Command(name = "pagewire", mixinStandardHelpOptions = true, versionProvider = Converters.Version.class,
        scope = CommandLine.ScopeType.INHERIT, exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:completed (and verified, when asked)", "1:the migration failed or was cancelled", "2:usage error (nothing started)",
                "3:completed, but the destination's RAM differs or no verdict came", "4:transport error (connect, handshake, connection lost, peer timeout)"},
        description = "Moves a running guest's RAM between hosts over a transport chosen by URI (tcp://, rdma://, aeron:...).",
        subcommands = {DemoCommand.class, SendCommand.class, ReceiveCommand.class, SnapshotCommand.class, RestoreCommand.class, ReplicateCommand.class,
                AotTrainingCommand.class,
                CommandLine.HelpCommand.class})
public final class PagewireCommand implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "give a command: demo, send, receive, snapshot or restore (see --help)");
    }

    /** @return the command line with our error handling: a transport error prints its message, not a stack trace */
    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new PagewireCommand());
        Converters.Size size = new Converters.Size();
        cl.registerConverter(Long.class, size);
        cl.registerConverter(long.class, size);
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            if (ex instanceof TransportException te) {
                commandLine.getErr().println("pagewire: " + PeerText.escape(te.getMessage()));
                return te.kind() == TransportException.Kind.INVALID_URI || te.kind() == TransportException.Kind.INVALID_CONFIG
                        ? ExitCode.USAGE.code() : ExitCode.TRANSPORT_ERROR.code();
            }
            if (ex instanceof io.pagewire.agent.snapshot.SnapshotException se) {
                commandLine.getErr().println("pagewire: " + PeerText.escape(se.getMessage()));
                return ExitCode.MIGRATION_FAILED.code(); // the snapshot failed, or the file is not a usable snapshot
            }
            if (ex instanceof IllegalArgumentException iae) {
                commandLine.getErr().println("pagewire: " + PeerText.escape(iae.getMessage()));
                return ExitCode.USAGE.code();
            }
            throw ex;
        });
        return cl;
    }
}
