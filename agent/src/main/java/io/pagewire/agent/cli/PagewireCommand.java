package io.pagewire.agent.cli;

import io.pagewire.transport.spi.TransportException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code pagewire} command and its subcommands. */
@Command(name = "pagewire", mixinStandardHelpOptions = true, version = "pagewire 0.1.0",
        description = "Moves a running guest's RAM between hosts over a transport chosen by URI (tcp://, rdma://, aeron:...).",
        subcommands = {DemoCommand.class, SendCommand.class, ReceiveCommand.class, SnapshotCommand.class, RestoreCommand.class,
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
        CommandLine.ITypeConverter<Long> size = text -> {
            try {
                return Sizes.parse(text);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        };
        cl.registerConverter(Long.class, size);
        cl.registerConverter(long.class, size);
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            if (ex instanceof TransportException te) {
                commandLine.getErr().println("pagewire: " + te.getMessage());
                return 2;
            }
            if (ex instanceof io.pagewire.agent.snapshot.SnapshotException se) {
                commandLine.getErr().println("pagewire: " + se.getMessage());
                return 2;
            }
            if (ex instanceof IllegalArgumentException iae) {
                commandLine.getErr().println("pagewire: " + iae.getMessage());
                return 2;
            }
            throw ex;
        });
        return cl;
    }
}
