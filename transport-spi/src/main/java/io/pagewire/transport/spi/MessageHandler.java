package io.pagewire.transport.spi;

import java.lang.foreign.MemorySegment;

/**
 * Receives what the peer sends. Every method has an empty default; implement what you need.
 *
 * <h2>Threading</h2>
 * Called on transport threads. Background messages of a {@link Capability#MULTI_STREAM}
 * connection come from several threads at once (for different pages); urgent messages come
 * from the urgent thread, concurrently with background ones. A handler that blocks slows the
 * lane it blocks: blocking in a background callback is how a slow destination applies back
 * pressure, and it never delays urgent callbacks.
 *
 * <h2>Ordering</h2>
 * Within one lane stream, messages arrive in the order sent. On a multi-stream background lane,
 * messages sent between two round ends may be delivered in any order across streams;
 * {@link #onRoundEnd} is a barrier: every background message sent before the round end has been
 * delivered before it, and none sent after it. There is no ordering between the two lanes.
 */
public interface MessageHandler {

    /**
     * The connection this handler serves, before any other callback and before {@code connect} or
     * {@code accept} returns it: keep it to answer from callbacks (no need to wait for the caller to
     * publish it). Called once, on the thread that opens the connection. A handler that throws here
     * fails the connection.
     *
     * @param connection the connection
     */
    default void onOpen(Connection connection) {
    }

    /**
     * Destination of a {@link Capability#SHARED_MEMORY} connection: the source handed over region
     * {@code regionId} itself. Map {@code file} in place of this side's memory for the region (it then
     * holds the source's pages, current at every moment, and no page of it is sent) and close the
     * descriptor when done. Called during the handshake, after {@link #onOpen} and before any frame.
     * The default refuses: a handler that does not take shared memory fails the connection.
     *
     * @param regionId the region
     * @param file the source's file and the region's offset in it; the descriptor is the handler's once
     *        this returns (when it throws, the transport closes it: do not close it then)
     */
    default void onSharedRegion(int regionId, RegionFile file) {
        throw new UnsupportedOperationException("this message handler does not take shared memory (implement"
                + " MessageHandler.onSharedRegion), so region " + regionId + " cannot be handed over");
    }

    /**
     * Pages have been placed in destination RAM (written to the region's memory, or handed to
     * its {@link PagePlacer}).
     */
    default void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
    }

    /** The source found these pages all zero and sent no data for them. The transport writes nothing. */
    default void onZeroRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
    }

    /** These pages are ballooned (known free) and were neither scanned nor sent. The transport writes nothing. */
    default void onSkipRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
    }

    /** Every background message sent before round end {@code round} has been delivered. */
    default void onRoundEnd(long round) {
    }

    /** The peer asks for pages (on the source: a postcopy fault at the destination). */
    default void onPageRequest(int regionId, long firstPage, int pageCount) {
    }

    /**
     * An opaque control message (agent-level commands and replies).
     *
     * @param payload the bytes; valid only during the call
     */
    default void onControl(LaneKind lane, MemorySegment payload) {
    }

    /**
     * On the destination: the source has sent everything and every stream delivered it; answer
     * with {@code urgent().sendComplete()} once the RAM is verified. On the source: the
     * destination acknowledged completion.
     */
    default void onComplete() {
    }

    /**
     * The connection failed (called at most once, and never after a clean close following
     * completion). Every later send throws the same exception.
     */
    default void onError(TransportException error) {
    }

    /**
     * The connection has ended, for whatever reason: the last callback, exactly once, after every
     * transport thread that calls this handler has stopped and every transport resource is released
     * (so a receiver can wait for this instead of polling {@link Connection#failure()}). It ends when
     * it is closed locally, when it fails, or when the peer ends it in order after completion.
     *
     * @param failure what ended it ({@link Connection#failure()}), or null when it ended cleanly after
     *        completion; unlike {@link #onError} also reported for a local close or abort (kind
     *        {@code CLOSED}) and for a failure after completion
     */
    default void onClosed(TransportException failure) {
    }
}
