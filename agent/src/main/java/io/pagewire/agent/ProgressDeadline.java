package io.pagewire.agent;

/**
 * A wait that lasts as long as the peer shows progress: it expires only after {@code stallNs}
 * during which the peer's progress figure did not grow, however long the whole wait takes. The
 * clock is passed in, so the rule is testable without waiting.
 *
 * <p>Threading: any thread (synchronized; progress comes on a transport thread, the waiter reads).
 */
final class ProgressDeadline {
    private final long stallNs;
    private long lastGrowthNs;   // guarded by this
    private long value = -1;     // guarded by this

    /**
     * @param stallNs how long without growth ends the wait
     * @param nowNs the clock now ({@link System#nanoTime()})
     */
    ProgressDeadline(long stallNs, long nowNs) {
        if (stallNs <= 0) {
            throw new IllegalArgumentException("stall timeout " + stallNs + " ns must be positive");
        }
        this.stallNs = stallNs;
        this.lastGrowthNs = nowNs;
    }

    /** The wait starts (again) now: whatever happened before does not count against it. */
    synchronized void restart(long nowNs) {
        lastGrowthNs = nowNs;
    }

    /**
     * The peer reports its figure (bytes done); only growth extends the wait.
     *
     * @return whether it grew
     */
    synchronized boolean progress(long reported, long nowNs) {
        if (reported <= value) {
            return false;
        }
        value = reported;
        lastGrowthNs = nowNs;
        return true;
    }

    /** @return nanoseconds left before the wait expires (0 or less: expired) */
    synchronized long remainingNs(long nowNs) {
        return lastGrowthNs + stallNs - nowNs;
    }

    /** @return the highest figure reported, -1 before any */
    synchronized long value() {
        return value;
    }

    /** @return how long without growth ends the wait */
    long stallNs() {
        return stallNs;
    }
}
