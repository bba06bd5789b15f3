package io.pagewire.perf;

import io.pagewire.transport.spi.Units;
import picocli.CommandLine;

import java.util.concurrent.Callable;

/**
 * Runs a benchmark main through picocli: {@code --help}, unknown options and malformed values are
 * reported the same way as by {@code pagewire}; sizes ({@code long} options) go through the
 * project's one size parser ({@link Units}).
 */
public final class BenchCli {
    private BenchCli() {
    }

    /**
     * Parses {@code args} into {@code command}, runs it and exits the JVM with its code (2 on a usage error).
     *
     * @param command a {@code @Command} object whose {@code call()} runs the benchmark
     * @param args the command line
     */
    public static void main(Callable<Integer> command, String[] args) {
        System.exit(commandLine(command).execute(args));
    }

    /** @return the command line for {@code command}, with the size converter registered */
    public static CommandLine commandLine(Callable<Integer> command) {
        CommandLine cl = new CommandLine(command);
        CommandLine.ITypeConverter<Long> size = text -> {
            try {
                return Units.parseSize(text);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        };
        cl.registerConverter(Long.class, size);
        cl.registerConverter(long.class, size);
        return cl;
    }
}
