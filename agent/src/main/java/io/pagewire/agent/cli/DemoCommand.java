package io.pagewire.agent.cli;

import io.pagewire.agent.ChildJvm;
import io.pagewire.agent.Transfer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/** {@code pagewire demo}: a destination JVM, a source in this JVM, a verified transfer over loopback. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Start a destination JVM, send it RAM over loopback and verify its copy byte for byte.")
final class DemoCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--uri", defaultValue = "tcp://127.0.0.1:0", paramLabel = "URI",
            description = "listen URI of the destination; port 0 picks a free port (default ${DEFAULT-VALUE})")
    String uri;

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
        ChildJvm.Started dst = ChildJvm.start(List.of("receive", "--listen", uri, "--ram", Long.toString(ram)), "LISTENING ");
        try {
            String target = dst.line().substring("LISTENING ".length());
            if (!json) {
                spec.commandLine().getOut().println("destination pid " + dst.process().pid() + " listening on " + target + "; sending " + Sizes.human(ram));
            }
            Transfer.Stats stats = Transfer.send(target, memory, 4096);
            boolean exited = dst.process().waitFor(60, TimeUnit.SECONDS);
            boolean verified = stats.verified() && exited && dst.process().exitValue() == 0;
            Transfer.Stats shown = new Transfer.Stats(stats.status(), stats.totalTimeMs(), stats.setupTimeMs(), stats.totalBytes(),
                    stats.transferredBytes(), stats.normalPages(), stats.duplicatePages(), stats.pageSize(), stats.mbps(), verified);
            spec.commandLine().getOut().println(json ? shown.json() : shown.infoMigrate());
            return verified ? 0 : 1;
        } finally {
            dst.process().destroyForcibly();
        }
    }
}
