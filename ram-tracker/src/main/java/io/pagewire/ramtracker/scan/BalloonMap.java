package io.pagewire.ramtracker.scan;

import io.pagewire.ramtracker.bitmap.DirtyBitmap;

import java.lang.foreign.Arena;

/**
 * The pages of a region that the guest gave back through the balloon (seed 002): they are known
 * free, so they are never scanned for zeros and go on the wire as one skip record per run. One
 * bit per page; runs are found 64 pages at a time, so a 12 GiB ballooned range costs tens of
 * microseconds, not a scan.
 *
 * <p>Threading: the agent marks and unmarks from its balloon-event thread while classifiers read
 * on others; marks are atomic. Unmark a range before the guest may use its pages again
 * (virtio-balloon deflate with {@code VIRTIO_BALLOON_F_MUST_TELL_HOST}): a page the guest writes
 * after that is dirty-logged and sent in a later round.
 */
public final class BalloonMap {
    private final DirtyBitmap bits;

    /**
     * @param pageCount pages of the region
     * @param arena where the map lives (large maps are mapped lazily: untouched parts cost nothing)
     */
    public BalloonMap(long pageCount, Arena arena) {
        this.bits = DirtyBitmap.allocate(pageCount, arena);
    }

    /** @return pages of the region */
    public long pageCount() {
        return bits.pageCount();
    }

    /**
     * Marks pages as ballooned (given back by the guest).
     *
     * @param firstPage first page
     * @param count pages
     */
    public void mark(long firstPage, long count) {
        bits.markRangeAtomic(firstPage, count);
    }

    /**
     * Marks pages as no longer ballooned (taken back by the guest).
     *
     * @param firstPage first page
     * @param count pages
     */
    public void unmark(long firstPage, long count) {
        bits.clearRangeAtomic(firstPage, count);
    }

    /**
     * @param page page index
     * @return whether the page is ballooned
     */
    public boolean isBallooned(long page) {
        return bits.isDirty(page);
    }

    /**
     * @param fromPage first page to look at
     * @param toPage end (exclusive)
     * @return the first ballooned page in the range, or {@code toPage}
     */
    public long nextBallooned(long fromPage, long toPage) {
        return bits.nextDirty(fromPage, toPage);
    }

    /**
     * @param fromPage first page to look at
     * @param toPage end (exclusive)
     * @return the first page in the range that is not ballooned, or {@code toPage}
     */
    public long nextNotBallooned(long fromPage, long toPage) {
        return bits.nextClean(fromPage, toPage);
    }

    /** @return ballooned pages */
    public long count() {
        return bits.count();
    }

    @Override
    public String toString() {
        return "BalloonMap(" + count() + " of " + pageCount() + " pages ballooned)";
    }
}
