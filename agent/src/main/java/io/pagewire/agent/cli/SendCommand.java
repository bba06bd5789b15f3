package io.pagewire.agent.cli;

import io.pagewire.agent.Transfer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.Callable;

/** {@code pagewire send}: the source side, with a synthetic RAM image. */
@Command(name = "send", mixinStandardHelpOptions = true,
        description = "Fill RAM of the given size with a verifiable pattern and send it to a destination listening on URI.")
final class SendCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--to", required = true, paramLabel = "URI", description = "the destination, e.g. tcp://dst:4444?channels=2")
    String to;

    @Option(names = "--ram", defaultValue = "1G", paramLabel = "SIZE", description = "guest RAM size (default ${DEFAULT-VALUE})")
    long ram;

    @Option(names = "--zero-fraction", defaultValue = "0.25", paramLabel = "F", description = "fraction of zero pages, 0..1 (default ${DEFAULT-VALUE})")
    double zeroFraction;

    @Option(names = "--json", description = "print statistics as JSON")
    boolean json;

    @Override
    public Integer call() throws Exception {
        MemorySegment memory = Arena.ofShared().allocate(ram, 4096);
        Patterns.fill(memory, 4096, zeroFraction, 1);
        Transfer.Stats stats = Transfer.send(to, memory, 4096);
        spec.commandLine().getOut().println(json ? stats.json() : stats.infoMigrate());
        return stats.verified() ? 0 : 1;
    }
}
