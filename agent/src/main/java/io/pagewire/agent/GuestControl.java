package io.pagewire.agent;

/**
 * What the migration engine asks of the guest; the embedding agent implements it (for QEMU:
 * {@code stop}/{@code cont} and the vCPU throttle). The engine pauses the guest only for the
 * switchover, and only after deciding to switch over.
 */
public interface GuestControl {

    /** Stops every vCPU; returns once none of them can write guest RAM any more. */
    void pause();

    /** Lets the vCPUs run again (after a failed or cancelled switchover). */
    void resume();

    /**
     * Slows the vCPUs (auto-converge): each vCPU sleeps this share of its time.
     *
     * @param percent 0 (full speed) .. 99
     */
    void throttle(int percent);

    /** A guest that ignores throttling: for agents whose guests cannot be slowed. */
    interface Unthrottled extends GuestControl {
        @Override
        default void throttle(int percent) {
            throw new UnsupportedOperationException("this guest cannot be throttled; use the force or cancel policy");
        }
    }
}
