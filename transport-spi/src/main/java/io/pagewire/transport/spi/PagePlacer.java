package io.pagewire.transport.spi;

import java.lang.foreign.MemorySegment;

/**
 * Places received pages where the transport cannot write directly: for example a postcopy
 * destination that must install pages atomically with {@code UFFDIO_COPY}. A region with a
 * placer gets its page data in a transport-owned staging buffer; the placer copies it into
 * place before the transport reports the pages with {@link MessageHandler#onPages}.
 *
 * <p>Called on transport receive threads, possibly several at once for different pages.
 */
@FunctionalInterface
public interface PagePlacer {
    /**
     * @param regionId the region
     * @param firstPage first page index
     * @param pageCount number of pages
     * @param data the page data ({@code pageCount * pageSize} bytes); valid only during the call
     */
    void place(int regionId, long firstPage, int pageCount, MemorySegment data);

    /**
     * Offers memory for a PAGES frame to land in directly, instead of the staging buffer (saves a
     * copy). When this returns a segment, the transport receives the frame's data into it and then
     * calls either {@link #place} with exactly that segment as {@code data}, or, when the frame
     * never completed (connection failure, digest mismatch), {@link #abandon} for the same pages.
     *
     * @return {@code pageCount * pageSize} bytes to receive into, or null for the staging buffer (the default)
     */
    default MemorySegment reserve(int regionId, long firstPage, int pageCount) {
        return null;
    }

    /** A frame {@link #reserve} accepted did not complete: its pages were not placed, their memory holds garbage. */
    default void abandon(int regionId, long firstPage, int pageCount) {
    }
}
