package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.Connection;

/**
 * What an {@code rdma://} connection did itself, for benchmarks and diagnostics (the NIC's part,
 * on the simulated fabric, is in {@code SimStats} of the test fixture).
 *
 * @param copiedPageBytes page bytes the transport copied in memory (only with {@code data-digest=true}:
 *        the staging copy the checksum is taken over); 0 means every page went from guest RAM to the NIC untouched
 * @param messagesPosted messages (SENDs) posted with frames, both lanes, handshake excluded
 * @param pageMessages of those, messages that reported pages (the notifications)
 * @param framesBuilt frames written into those messages
 * @param creditMessages credit-only messages (an envelope without frames)
 */
public record RdmaWork(long copiedPageBytes, long messagesPosted, long pageMessages, long framesBuilt, long creditMessages) {

    /**
     * @param c a connection made by the {@code rdma} provider
     * @return its counters now
     * @throws IllegalArgumentException for any other connection
     */
    public static RdmaWork of(Connection c) {
        if (c instanceof RdmaConnection r) {
            return r.work();
        }
        throw new IllegalArgumentException("not an rdma:// connection: " + c);
    }

    /** @return the counters accrued since {@code earlier} */
    public RdmaWork minus(RdmaWork earlier) {
        return new RdmaWork(copiedPageBytes - earlier.copiedPageBytes, messagesPosted - earlier.messagesPosted,
                pageMessages - earlier.pageMessages, framesBuilt - earlier.framesBuilt, creditMessages - earlier.creditMessages);
    }
}
