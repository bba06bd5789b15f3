package io.pagewire.ramtracker.scan;

/**
 * Receives the ordered runs of a classification. Called on the classifying thread, once per
 * run (never per page), with nothing allocated per call.
 */
@FunctionalInterface
public interface RunSink {

    /**
     * @param kind what the pages are
     * @param firstPage first page of the run
     * @param count pages in the run (at least 1)
     * @return true when the run was taken; false to refuse it and stop the classification
     *         there (back pressure): the classifier returns {@code firstPage} so the caller can
     *         resume from it
     */
    boolean run(RunKind kind, long firstPage, long count);
}
