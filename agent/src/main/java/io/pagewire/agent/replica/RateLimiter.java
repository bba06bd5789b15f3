package io.pagewire.agent.replica;

/**
 * The background rate cap of replication ({@code --rate-limit}): decides how long the sender waits so that the bytes
 * sent since the start of a pass stay within the rate. Pure accounting: the caller supplies the time and does the
 * waiting, so the decisions can be checked without a clock. Waits shorter than {@link #MIN_WAIT_NS} are not taken
 * (a park that short costs more than it keeps); a sender behind schedule does not wait (a pass that started late
 * catches up within the pass; each pass starts a new account, so no credit carries over from idle time).
 *
 * <p>Not thread-safe: one sender.
 */
final class RateLimiter {
    /** Shortest wait taken, in ns. */
    static final long MIN_WAIT_NS = 50_000;

    private final long bytesPerSec;
    private long startNs;
    private long bytes;
    private long waitedNs;

    /** @param bytesPerSec the cap, 0 = none */
    RateLimiter(long bytesPerSec) {
        if (bytesPerSec < 0) {
            throw new IllegalArgumentException("rate cap " + bytesPerSec + " bytes/s is negative");
        }
        this.bytesPerSec = bytesPerSec;
    }

    /** Starts an account (a pass) at {@code nowNs}. */
    void start(long nowNs) {
        startNs = nowNs;
        bytes = 0;
    }

    /**
     * Accounts {@code sentBytes} more and says how long to wait before sending on.
     *
     * @param sentBytes bytes just sent
     * @param nowNs the time now
     * @return ns to wait (0: send on now)
     */
    long sent(long sentBytes, long nowNs) {
        bytes += sentBytes;
        if (bytesPerSec == 0) {
            return 0;
        }
        // The bytes so far are due at start + bytes / rate; in double, so that no RAM size or rate overflows.
        double wait = (double) (startNs - nowNs) + bytes * 1e9 / bytesPerSec;
        if (wait < MIN_WAIT_NS) {
            return 0;
        }
        long w = wait >= Long.MAX_VALUE ? Long.MAX_VALUE : (long) wait;
        waitedNs = Math.max(waitedNs, waitedNs + w); // saturates
        return w;
    }

    /** @return bytes accounted since {@link #start} */
    long bytes() {
        return bytes;
    }

    /** @return total of the waits decided, all accounts together (ns) */
    long waitedNs() {
        return waitedNs;
    }
}
