package io.pagewire.ramtracker.dirty;

import io.pagewire.ramtracker.bitmap.DirtySink;

/**
 * Where dirty pages come from: the kernel's page tables ({@link UffdWriteTracker}) or a VMM's
 * dirty log ({@link ExternalDirtyLog}). The agent does not care which.
 *
 * <pre>
 *   start() ---- collect(sink) ---- collect(sink) ---- ... ---- collect(sink) ---- stop()
 *        pages written after start()     are reported by exactly the collects that follow
 * </pre>
 *
 * <p>Guarantee of every source: a page written while tracking is reported by a later collect
 * that covers it; a page written while a collect is running is reported by that collect or the
 * next, never lost. A collect re-arms tracking for what it reports. Pages written before
 * {@link #start()} are not reported: the first round sends everything anyway.
 *
 * <p>Threading: {@link #start()}, {@link #collect}, {@link #stop()} and {@link #close()} are
 * serialised by the source; each collect marks its sink from the calling thread, so one sink
 * must not be marked by anything else at the same time (see {@code DirtyBitmap}).
 */
public interface DirtyLogSource extends AutoCloseable {

    /** @return what this source is, for messages ("userfaultfd write-protect of region 'pc.ram'") */
    String description();

    /** @return pages covered (page indices are region page indices) */
    long pageCount();

    /** Starts tracking. */
    void start();

    /** @return whether tracking is running */
    boolean isTracking();

    /**
     * Reports the pages of {@code [firstPage, firstPage + count)} written since the last collect
     * that covered them (or since {@link #start()}) into {@code sink}, and re-arms tracking for
     * them. Collecting in chunks lets the sender start on the first chunk before the whole
     * region is synced.
     *
     * @param sink receives the dirty pages
     * @param firstPage first page
     * @param count pages
     * @return pages reported
     */
    long collect(DirtySink sink, long firstPage, long count);

    /**
     * Collects the whole region.
     *
     * @param sink receives the dirty pages
     * @return pages reported
     */
    default long collect(DirtySink sink) {
        return collect(sink, 0, pageCount());
    }

    /** Stops tracking; what was written since the last collect is not reported any more. */
    void stop();

    /** Stops tracking if running and releases the source. Idempotent. */
    @Override
    void close();
}
