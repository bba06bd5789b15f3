package io.pagewire.agent.snapshot;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Slow storage on purpose, to reproduce the seed's slow disk: a cap on the write rate (all writer threads
 * together) and a latency added to every write. {@code file:PATH?rate=100M&latency=2ms}.
 *
 * @param rateBytesPerSec write-rate cap in bytes per second, 0 = none
 * @param writeLatencyNs time added to every write (each positional write call), 0 = none
 */
public record StorageOptions(long rateBytesPerSec, long writeLatencyNs) {
    /** Storage as fast as it is. */
    public static final StorageOptions NONE = new StorageOptions(0, 0);

    public StorageOptions {
        if (rateBytesPerSec < 0) {
            throw new IllegalArgumentException("write rate " + rateBytesPerSec + " B/s is negative");
        }
        if (writeLatencyNs < 0 || writeLatencyNs > TimeUnit.SECONDS.toNanos(10)) {
            throw new IllegalArgumentException("write latency " + writeLatencyNs + " ns outside 0..10 s");
        }
    }

    /** @return true when neither a cap nor a latency is set */
    public boolean none() {
        return rateBytesPerSec == 0 && writeLatencyNs == 0;
    }

    @Override
    public String toString() {
        return none() ? "full speed" : (rateBytesPerSec > 0 ? "rate " + (rateBytesPerSec >> 20) + " MiB/s" : "")
                + (rateBytesPerSec > 0 && writeLatencyNs > 0 ? ", " : "") + (writeLatencyNs > 0 ? "latency " + writeLatencyNs / 1000 + " us" : "");
    }

    /** Paces writes: a token bucket without burst, shared by the writer threads. */
    static final class Throttle {
        private final StorageOptions options;
        private long nextFreeNs;

        Throttle(StorageOptions options) {
            this.options = options;
        }

        /** Blocks as the options say before a write of {@code bytes}. */
        void beforeWrite(long bytes) {
            long until = System.nanoTime();
            if (options.rateBytesPerSec > 0) {
                long cost = (long) (bytes * 1e9 / options.rateBytesPerSec);
                synchronized (this) {
                    long start = Math.max(until, nextFreeNs);
                    nextFreeNs = start + cost;
                    until = start + cost;
                }
            }
            until += options.writeLatencyNs;
            long left;
            while ((left = until - System.nanoTime()) > 0) {
                LockSupport.parkNanos(left);
            }
        }
    }
}
