package io.pagewire.transport.spi;

import java.lang.foreign.MemorySegment;

/**
 * One lane of a connection. Sends report back pressure as a return value in the {@code offer}
 * methods (Aeron's convention) and block in the {@code send} methods; a failed or closed
 * connection throws {@link TransportException} from both.
 *
 * <h2>Pages, not bytes</h2>
 * {@link #offerPages} passes a reference into the source RAM region; the transport reads the
 * page data at some time before {@link #flush()} returns, possibly much later than the offer.
 * The source RAM is only read, never written. A transport may gather short runs of pages and
 * hand them on together (as one page list) at the next round end, flush, complete, or when the
 * list is full.
 *
 * <h2>Threading</h2>
 * The background lane has a single producer: call its send methods from one thread at a time.
 * The urgent lane is thread-safe; each call is written whole, never interleaved with another.
 *
 * <h2>Who sends what</h2>
 * Pages, zero runs, skip runs, round ends go from source to destination; page requests from
 * destination to source; control, error and complete either way (complete from the
 * destination is the acknowledgement). A send that does not fit the role throws
 * {@link IllegalStateException}.
 */
public interface Lane {
    /** The lane cannot take more now; try again (background lane only). A closed or failed connection throws instead. */
    long BACK_PRESSURED = -1;

    /** @return which lane this is */
    LaneKind kind();

    /**
     * Offers pages without blocking.
     *
     * @param regionId region id
     * @param firstPage first page index
     * @param pageCount number of pages, at least 1
     * @return the number of pages taken from the start of the range (1..pageCount), or
     *         {@link #BACK_PRESSURED}
     * @throws TransportException when the connection failed or is closed
     * @throws IndexOutOfBoundsException when the range is outside the region
     */
    long offerPages(int regionId, long firstPage, long pageCount);

    /**
     * Blocks until an offer on this lane may take pages again: what a producer does after
     * {@link #BACK_PRESSURED} when it has nothing else to do (a blocking idle strategy). It may
     * return early (an offer can still be back-pressured); it returns at once on a lane that never
     * back-pressures.
     *
     * @throws TransportException when the connection failed or is closed
     */
    default void awaitRoom() {
    }

    /**
     * Sends pages, blocking while the lane is back-pressured.
     *
     * @param regionId region id
     * @param firstPage first page index
     * @param pageCount number of pages, at least 1
     */
    void sendPages(int regionId, long firstPage, long pageCount);

    /** Sends a run of zero pages: no data crosses the wire. */
    void sendZeroRun(int regionId, long firstPage, long pageCount);

    /** Sends a run of ballooned (skipped) pages: no data crosses the wire. */
    void sendSkipRun(int regionId, long firstPage, long pageCount);

    /** Ends a round: a barrier across all background streams (see {@link MessageHandler#onRoundEnd}). Background lane only. */
    void sendRoundEnd(long round);

    /** Asks the source for pages (destination, urgent lane). */
    void sendPageRequest(int regionId, long firstPage, int pageCount);

    /**
     * Sends an opaque control message of at most {@link #MAX_CONTROL_BYTES}.
     *
     * @param payload the bytes (copied before the call returns)
     */
    void sendControl(MemorySegment payload);

    /** Largest control payload. */
    int MAX_CONTROL_BYTES = 64 * 1024;

    /**
     * Source, background lane: everything has been sent (implies a final barrier). The
     * destination answers on its urgent lane; the source sees {@link MessageHandler#onComplete}.
     * Destination, urgent lane: acknowledges completion.
     */
    void sendComplete();

    /**
     * Blocks until everything offered on this lane has been read from source RAM and handed to
     * the network (kernel socket buffer, NIC, or remote memory).
     */
    void flush();
}
