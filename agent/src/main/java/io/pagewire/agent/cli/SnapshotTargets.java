package io.pagewire.agent.cli;

import io.pagewire.agent.snapshot.StorageOptions;

import java.nio.file.Path;
import java.util.Locale;

/**
 * Parses a snapshot target: {@code file:PATH[?rate=SIZE&latency=DURATION]} (a snapshot file, optionally on
 * emulated slow storage), anything else is a transport URI.
 */
final class SnapshotTargets {
    private SnapshotTargets() {
    }

    /** A {@code file:} target. */
    record FileTarget(Path path, StorageOptions storage) {
    }

    /** @return the file target, or null when {@code uri} is not {@code file:} */
    static FileTarget file(String uri) {
        if (!uri.startsWith("file:")) {
            return null;
        }
        String rest = uri.substring("file:".length());
        if (rest.startsWith("//")) {
            rest = rest.substring(2); // file:///path
        }
        int q = rest.indexOf('?');
        String path = q < 0 ? rest : rest.substring(0, q);
        if (path.isEmpty()) {
            throw new IllegalArgumentException("snapshot target '" + uri + "' names no file; write file:/path/to/snapshot");
        }
        long rate = 0;
        long latency = 0;
        if (q >= 0) {
            for (String kv : rest.substring(q + 1).split("&")) {
                int eq = kv.indexOf('=');
                String k = eq < 0 ? kv : kv.substring(0, eq);
                String v = eq < 0 ? "" : kv.substring(eq + 1);
                switch (k) {
                    case "rate" -> rate = Sizes.parse(v);
                    case "latency" -> latency = durationNs(v);
                    default -> throw new IllegalArgumentException("file target option '" + k + "' is not one of rate (bytes per second, e.g. 100M),"
                            + " latency (per write, e.g. 2ms)");
                }
            }
        }
        return new FileTarget(Path.of(path), new StorageOptions(rate, latency));
    }

    /** @return nanoseconds of "500us", "2ms", "1s", "100ns" */
    static long durationNs(String text) {
        String s = text.strip().toLowerCase(Locale.ROOT);
        long mul;
        String digits;
        if (s.endsWith("ns")) {
            mul = 1;
            digits = s.substring(0, s.length() - 2);
        } else if (s.endsWith("us")) {
            mul = 1_000;
            digits = s.substring(0, s.length() - 2);
        } else if (s.endsWith("ms")) {
            mul = 1_000_000;
            digits = s.substring(0, s.length() - 2);
        } else if (s.endsWith("s")) {
            mul = 1_000_000_000;
            digits = s.substring(0, s.length() - 1);
        } else {
            throw new IllegalArgumentException("'" + text + "' is not a duration; write e.g. 500us, 2ms, 1s");
        }
        try {
            return Math.multiplyExact(Long.parseLong(digits), mul);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("'" + text + "' is not a duration; write e.g. 500us, 2ms, 1s");
        }
    }
}
