package io.pagewire.ramtracker.scan;

/** What a run of pages is, as the wire format's frames need it. */
public enum RunKind {
    /** Pages with data: send their contents. */
    NORMAL,
    /**
     * Pages that read as zeros: found zero by scanning, or known zero without reading because they
     * were never populated. One run-length record, no data.
     */
    ZERO,
    /** Pages the guest gave back through the balloon: never scanned, one skip record, no data. */
    BALLOON
}
