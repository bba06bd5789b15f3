package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;

import java.security.SecureRandom;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The handshake's rules, the same for every transport: what a source may propose, what a destination
 * accepts, and the one bound on page payloads.
 */
public final class Handshakes {
    private static final SecureRandom RANDOM = new SecureRandom();

    private Handshakes() {
    }

    /**
     * The payload bound: a power of two from {@link RegionDescriptor#MIN_PAGE_SIZE} to
     * {@link Wire#MAX_FRAME_PAYLOAD}, at least every region's page size.
     *
     * @return null when {@code maxPayload} fits, else why not, naming the value and the bound
     */
    public static String payloadBoundError(long maxPayload, List<RegionDescriptor> regions) {
        if (maxPayload < RegionDescriptor.MIN_PAGE_SIZE || maxPayload > Wire.MAX_FRAME_PAYLOAD || Long.bitCount(maxPayload) != 1) {
            return "max payload " + maxPayload + " is not a power of two in " + RegionDescriptor.MIN_PAGE_SIZE + ".." + Wire.MAX_FRAME_PAYLOAD;
        }
        for (RegionDescriptor d : regions) {
            if (d.pageSize() > maxPayload) {
                return "max payload " + maxPayload + " is smaller than region '" + d.name() + "''s page size " + d.pageSize();
            }
        }
        return null;
    }

    /**
     * The HELLO a source proposes, checked before anything is sent.
     *
     * @param payloadOption how the URI names the payload bound (for the message), e.g. {@code batch-bytes}
     * @throws TransportException {@code INVALID_URI} when the payload bound does not fit the layout,
     *         {@code INVALID_CONFIG} when the layout does not fit a HELLO
     */
    public static Hello hello(TransportContext context, String uri, String payloadOption, int flags, int channels, int maxPayload) {
        RamLayout layout = context.layout();
        String bound = payloadBoundError(maxPayload, layout.descriptors());
        if (bound != null) {
            throw new TransportException(Kind.INVALID_URI, payloadOption + "=" + maxPayload + " in '" + uri + "': " + bound);
        }
        int heartbeatMs = (int) Math.max(1, TimeUnit.NANOSECONDS.toMillis(context.heartbeatIntervalNs()));
        int peerTimeoutMs = (int) TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        if (context.authentication() != null) {
            flags |= Hello.FLAG_AUTHENTICATED;
        }
        Hello hello = new Hello(RANDOM.nextLong() | 1, flags, channels, maxPayload, heartbeatMs, peerTimeoutMs, layout.descriptors());
        if (hello.encodedLength() > Wire.MAX_HELLO_BYTES) {
            throw new TransportException(Kind.INVALID_CONFIG, "the RAM layout needs a " + hello.encodedLength()
                    + "-byte HELLO, over the " + Wire.MAX_HELLO_BYTES + "-byte limit; use fewer regions or shorter names");
        }
        return hello;
    }

    /**
     * Source: checks the destination's heartbeat interval from its HELLO_ACK.
     *
     * @throws TransportException {@code HANDSHAKE} when it is too long for this side's peer timeout
     */
    public static void checkAck(TransportContext context, long peerHeartbeatMs) {
        long peerTimeoutMs = TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        if (peerHeartbeatMs < 1 || 2 * peerHeartbeatMs > peerTimeoutMs) {
            throw new TransportException(Kind.HANDSHAKE, "the destination's heartbeat interval " + peerHeartbeatMs
                    + " ms is too long for this source's peer timeout " + peerTimeoutMs + " ms");
        }
    }

    /**
     * Destination: why a decoded HELLO is refused, or null when it fits this side (layout, payload
     * bound, heartbeat against the peer timeout). The transport adds its own rules (stream count).
     */
    public static String refusal(TransportContext context, Hello hello) {
        String mismatch = RamLayout.mismatch(context.layout().descriptors(), hello.regions());
        if (mismatch != null) {
            return "RAM layout mismatch: " + mismatch;
        }
        String bound = payloadBoundError(Integer.toUnsignedLong(hello.maxPagePayload()), hello.regions());
        if (bound != null) {
            return bound;
        }
        long ownTimeoutMs = TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        if (2L * hello.heartbeatMs() > ownTimeoutMs) {
            return "the source's heartbeat interval " + hello.heartbeatMs() + " ms is too long for this destination's peer timeout "
                    + ownTimeoutMs + " ms";
        }
        return null;
    }

    /** @return the destination's guard: further policy on sources (authentication itself is {@link AuthExchange}) */
    public static HandshakeGuard guard(TransportContext context) {
        return HandshakeGuard.OPEN;
    }

    /** @return the heartbeat interval in whole milliseconds, at least 1 */
    public static long heartbeatMs(TransportContext context) {
        return Math.max(1, TimeUnit.NANOSECONDS.toMillis(context.heartbeatIntervalNs()));
    }
}
