package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRegion;

/**
 * Walks the runs of populated pages of a region (never-populated runs read as zeros and are skipped), from the
 * kernel's bookkeeping ({@link GuestRegion#nextPopulatedPage}, {@link GuestRegion#nextUnpopulatedPage}); a region
 * whose population is unknown is one run of every page. Used by snapshots and replication.
 */
public final class PopulatedRuns {
    private PopulatedRuns() {
    }

    /** What to do with one run. */
    @FunctionalInterface
    public interface Action<E extends Exception> {
        void run(long firstPage, long count) throws E;
    }

    /** Calls {@code action} for each run of populated pages of {@code r}, in order. */
    public static <E extends Exception> void forEach(GuestRegion r, Action<E> action) throws E {
        long pages = r.pageCount();
        long p = 0;
        while (p < pages) {
            long data = r.nextPopulatedPage(p, pages);
            if (data >= pages) {
                return;
            }
            long hole = Math.max(data + 1, r.nextUnpopulatedPage(data, pages)); // always progress
            action.run(data, hole - data);
            p = hole;
        }
    }
}
