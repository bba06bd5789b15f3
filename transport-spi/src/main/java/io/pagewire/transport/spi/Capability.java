package io.pagewire.transport.spi;

/**
 * What a transport's connections can do. Callers branch on capabilities, never on classes.
 */
public enum Capability {
    /** Pages are sent from the source RAM segment without a user-space copy (when no data digest is in use). */
    ZERO_COPY_SEND,
    /** Received pages land in the destination RAM segment without a user-space copy. */
    ZERO_COPY_RECEIVE,
    /** The source writes pages into destination RAM itself (RDMA WRITE); the destination CPU does not copy. */
    ONE_SIDED_PLACEMENT,
    /** The background lane runs over several parallel streams (pages of one round may land in any order). */
    MULTI_STREAM,
    /** The urgent lane has its own connection, stream or queue pair: it never queues behind background data. */
    SEPARATE_URGENT_PATH,
    /** Frames carry a CRC32C over the page data (data digest), end to end. */
    DATA_DIGEST,
    /** Urgent traffic is marked (DSCP / socket priority) so a QoS network can prioritise it. */
    TRAFFIC_CLASS_MARKING,
    /** RAM regions are registered with the transport (RDMA memory registration); see {@link RamLayout}. */
    MEMORY_REGISTRATION,
    /**
     * Regions backed by a file ({@link RamRegion#file()}) were handed to the destination, not copied: both
     * sides map the same memory, and no page of those regions crosses the connection
     * ({@link Connection#sharedRegions()}). A local transport only (unix domain sockets).
     */
    SHARED_MEMORY
}
