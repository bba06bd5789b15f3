package io.pagewire.agent.cli;

import io.pagewire.transport.spi.Units;
import picocli.CommandLine;

import java.time.Duration;

/** picocli converters over the project's one size and duration parser ({@link Units}). */
final class Converters {
    private Converters() {
    }

    /** Sizes: {@code 4096}, {@code 512M}, {@code 1G}. Registered for every {@code long} option. */
    static final class Size implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return Units.parseSize(value);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    /** Durations whose bare number is milliseconds: {@code 300}, {@code 300ms}, {@code 2s}. */
    static final class Millis implements CommandLine.ITypeConverter<Duration> {
        @Override
        public Duration convert(String value) {
            return duration(value, "ms");
        }
    }

    /** Durations whose bare number is seconds: {@code 60}, {@code 60s}, {@code 10min}, {@code 500ms}. */
    static final class Seconds implements CommandLine.ITypeConverter<Duration> {
        @Override
        public Duration convert(String value) {
            return duration(value, "s");
        }
    }

    private static Duration duration(String value, String bareUnit) {
        try {
            return Units.parseDuration(value, bareUnit);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.TypeConversionException(e.getMessage());
        }
    }

    /** {@code --version} of every command: the version the build stamped, not a literal in the code. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"pagewire " + version(), "Java " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ")"};
        }

        /** @return the build's project version (e.g. {@code 0.1.0-SNAPSHOT}) */
        static String version() {
            try (var in = Converters.class.getResourceAsStream("version.properties")) {
                if (in == null) {
                    throw new IllegalStateException("version.properties is missing from the agent's resources: a broken build");
                }
                var p = new java.util.Properties();
                p.load(in);
                return p.getProperty("version");
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException("reading the version the build stamped", e);
            }
        }
    }
}
