package io.pagewire.transport.spi;

import java.util.Objects;
import java.util.Set;

/**
 * One migration connection, with a background and an urgent lane.
 *
 * <h2>Contract</h2>
 * <ul>
 * <li>An urgent message never waits behind background data already queued, on every connection with
 *     {@link Capability#SEPARATE_URGENT_PATH}. A connection configured without it (TCP's
 *     {@code urgent-channel=shared}, kept to measure what the priority lane buys) writes urgent frames
 *     between background frames on one stream, so they wait behind the bulk data ahead of them; every
 *     other promise here holds for it too.</li>
 * <li>Memory is bounded: the background lane holds at most {@link ConnectionStats#backgroundPendingLimitBytes()}
 *     of offered, unsent page data; beyond that offers are back-pressured.</li>
 * <li>A failed peer or connection surfaces as {@link MessageHandler#onError} and as exceptions from sends, on both
 *     sides, within the peer timeout; never as missing pages.</li>
 * <li>{@link #close()} is idempotent and releases every thread, socket and buffer.</li>
 * <li>The RAM given in the layout must stay mapped until {@link #close()} has returned: until then transport
 *     threads may still be reading or writing it, also after a failure.</li>
 * </ul>
 */
public interface Connection extends AutoCloseable {

    /** @return source or destination */
    Role role();

    /** @return the peer's URI or address, for messages */
    String peer();

    /** @return the negotiated RAM layout (this side's regions) */
    RamLayout layout();

    /** @return what this connection can do */
    Set<Capability> capabilities();

    /**
     * @return the ids of the regions handed over rather than copied ({@link Capability#SHARED_MEMORY}):
     *         on the source, regions whose pages need not be sent; on the destination, regions whose
     *         memory the handler received through {@link MessageHandler#onSharedRegion}
     */
    default Set<Integer> sharedRegions() {
        return Set.of();
    }

    /** @return the bulk lane */
    Lane background();

    /**
     * @return how many background channels {@link #backgroundChannel} offers: producers that may
     *         fill the background lane in parallel, one per channel (QEMU's multifd channels); 1
     *         when the transport has a single background producer
     */
    default int backgroundChannels() {
        return 1;
    }

    /**
     * The producer side of one background channel (source): a background lane whose pages, zero
     * runs and skip runs travel on channel {@code channel} only, bounded and back-pressured on
     * their own, so that each channel can be fed by its own thread with no lock between them.
     * <ul>
     * <li>Each channel has a single producer; different channels may be used from different
     *     threads at the same time.</li>
     * <li>Round ends, control messages and completion go on {@link #background()}, which first
     *     hands on what every channel gathered: use it only once every channel's producer has
     *     finished its part of the round (join them first: that orders their offers before it).
     *     A channel refuses those sends with {@link IllegalStateException}.</li>
     * <li>A page still appears at most once per round, whichever channel carries it.</li>
     * </ul>
     * The default, for a transport with one background producer, is channel 0 = {@link #background()}.
     *
     * @param channel 0 .. {@link #backgroundChannels()} - 1
     * @return the channel's lane
     * @throws IndexOutOfBoundsException when there is no such channel
     */
    default Lane backgroundChannel(int channel) {
        Objects.checkIndex(channel, backgroundChannels());
        return background();
    }

    /** @return the priority lane */
    Lane urgent();

    /** @return live counters */
    ConnectionStats stats();

    /**
     * @return what ended the connection: null while it is healthy and after a clean end (completion
     *         acknowledged, then closed by either side); kind {@code CLOSED} after a local close or
     *         {@link #abort} before completion; otherwise the failure ({@code PEER_ERROR},
     *         {@code CONNECTION_LOST}, {@code TIMEOUT}, ...), also one after completion
     */
    TransportException failure();

    /** @return true once closed locally, failed, or ended by the peer after completion; every send then throws */
    boolean isClosed();

    /**
     * Fails the connection on purpose: the peer receives {@code reason} as an error (for example a
     * destination whose RAM verification failed), then the connection closes. Idempotent.
     *
     * @param reason what went wrong, for the peer's error message
     */
    void abort(String reason);

    /**
     * Closes abruptly if the transfer is incomplete (the peer sees an error), cleanly after
     * completion. Idempotent; releases every thread, socket and buffer.
     */
    @Override
    void close();
}
