package io.pagewire.agent.cli;

import io.pagewire.agent.Transfer;
import io.pagewire.transport.spi.Listener;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.concurrent.Callable;

/** {@code pagewire receive}: the destination side. */
@Command(name = "receive", mixinStandardHelpOptions = true,
        description = "Listen on a URI, receive one migration into RAM of the given size, verify it, and exit 0 when verified.")
final class ReceiveCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--listen", required = true, paramLabel = "URI",
            description = "where to listen, e.g. tcp://0.0.0.0:4444 (port 0 picks a free port; the URI is printed)")
    String listen;

    @Option(names = "--ram", defaultValue = "1G", paramLabel = "SIZE", description = "guest RAM size; must match the source (default ${DEFAULT-VALUE})")
    long ram;

    @Option(names = "--page-size", defaultValue = "4096", paramLabel = "BYTES", description = "page size (default ${DEFAULT-VALUE})")
    long pageSize;

    @Option(names = "--accept-timeout", defaultValue = "600", paramLabel = "SECONDS", description = "how long to wait for the source (default ${DEFAULT-VALUE})")
    long acceptTimeoutSeconds;

    @Override
    public Integer call() throws Exception {
        MemorySegment memory = Arena.ofShared().allocate(ram, 4096);
        try (Listener l = Transfer.listen(listen, memory, pageSize)) {
            spec.commandLine().getOut().println("LISTENING " + l.uri());
            spec.commandLine().getOut().flush();
            boolean ok = Transfer.receive(l, memory, pageSize, Duration.ofSeconds(acceptTimeoutSeconds));
            spec.commandLine().getOut().println(ok ? "RECEIVED verified" : "RECEIVED not verified");
            return ok ? 0 : 1;
        }
    }
}
