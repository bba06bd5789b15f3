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
                    case "rate" -> rate = io.pagewire.transport.spi.Units.parseSize(v);
                    case "latency" -> latency = io.pagewire.transport.spi.Units.parseDuration(v, "ms").toNanos();
                    default -> throw new IllegalArgumentException("file target option '" + k + "' is not one of rate (bytes per second, e.g. 100M),"
                            + " latency (per write, e.g. 2ms)");
                }
            }
        }
        return new FileTarget(Path.of(path), new StorageOptions(rate, latency));
    }
}
