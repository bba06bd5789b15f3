package io.pagewire.agent.replica;

import io.pagewire.ramtracker.GuestRegion;

/** Walks the runs of populated pages of a region (never-populated runs read as zeros and are skipped). */
final class PopulatedRuns {
    private PopulatedRuns() {
    }

    /** What to do with one run. */
    @FunctionalInterface
    interface Action<E extends Exception> {
        void run(long firstPage, long count) throws E;
    }

    /** Calls {@code action} for each run of populated pages of {@code r}, in order. */
    static <E extends Exception> void forEach(GuestRegion r, Action<E> action) throws E {
        long pages = r.pageCount();
        long p = 0;
        while (p < pages) {
            long data = r.nextPopulatedPage(p, pages);
            if (data >= pages) {
                return;
            }
            long hole = r.nextUnpopulatedPage(data, pages);
            action.run(data, hole - data);
            p = hole;
        }
    }
}
