package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.wire.Wire;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The options of an {@code rdma://} URI, parsed and validated in one place. Each side applies
 * the registration options to its own RAM; batch size and data digest are the source's choice
 * and travel in the HELLO.
 *
 * @param pinAll register all RAM at connect (QEMU's {@code x-rdma-pin-all})
 * @param chunkBytes on-demand registration unit
 * @param cacheChunks most chunks registered at once (on demand), each side
 * @param batchBytes most page bytes one notification reports (source)
 * @param queueDepth receive buffers per queue pair (the peer's credits), and background batches queued ahead of the sender
 * @param dataDigest CRC32C over the pages of each PAGES frame, from a staging copy (source)
 */
record RdmaOptions(boolean pinAll, int chunkBytes, int cacheChunks, int batchBytes, int queueDepth, boolean dataDigest) {
    static final int MIN_CHUNK_BYTES = 64 << 10;
    static final int MAX_CHUNK_BYTES = 1 << 30;
    static final int MIN_CACHE_CHUNKS = 8;
    static final int MAX_CACHE_CHUNKS = 1 << 20;
    static final int MIN_QUEUE_DEPTH = 4;
    static final int MAX_QUEUE_DEPTH = 1024;
    static final int DEFAULT_CHUNK_BYTES = 1 << 20;
    static final int DEFAULT_CACHE_CHUNKS = 256;
    static final int DEFAULT_BATCH_BYTES = 256 << 10;
    static final int DEFAULT_QUEUE_DEPTH = 32;

    static final Map<String, String> DESCRIPTIONS;

    static {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("pin-all", "true|false: register all RAM at connect instead of 1 MiB chunks on demand (default false; each side for its own RAM)");
        m.put("chunk-bytes", "on-demand registration unit, a power of two from 64k to 1g (default 1m)");
        m.put("reg-cache-chunks", "most chunks registered at once on demand, " + MIN_CACHE_CHUNKS + ".." + MAX_CACHE_CHUNKS
                + " (default " + DEFAULT_CACHE_CHUNKS + ": 256 MiB pinned with 1m chunks)");
        m.put("batch-bytes", "most page bytes per notification, a power of two from 4k to 16m (default 256k; source only)");
        m.put("queue-depth", "receive buffers per queue pair (the peer's credits) and background batches queued, "
                + MIN_QUEUE_DEPTH + ".." + MAX_QUEUE_DEPTH + " (default " + DEFAULT_QUEUE_DEPTH + ")");
        m.put("data-digest", "true|false: CRC32C over the pages of every batch, written from a staging copy (default false; source only)");
        DESCRIPTIONS = Map.copyOf(m);
    }

    static RdmaOptions parse(TransportUri uri) {
        int chunk = (int) uri.longOption("chunk-bytes", DEFAULT_CHUNK_BYTES, MIN_CHUNK_BYTES, MAX_CHUNK_BYTES);
        if (Integer.bitCount(chunk) != 1) {
            throw uri.badOption("chunk-bytes", uri.options().get("chunk-bytes"), "a power of two from 64k to 1g");
        }
        int batch = (int) uri.longOption("batch-bytes", DEFAULT_BATCH_BYTES, 4096, Wire.MAX_FRAME_PAYLOAD);
        if (Integer.bitCount(batch) != 1) {
            throw uri.badOption("batch-bytes", uri.options().get("batch-bytes"), "a power of two from 4k to 16m");
        }
        return new RdmaOptions(
                uri.booleanOption("pin-all", false),
                chunk,
                uri.intOption("reg-cache-chunks", DEFAULT_CACHE_CHUNKS, MIN_CACHE_CHUNKS, MAX_CACHE_CHUNKS),
                batch,
                uri.intOption("queue-depth", DEFAULT_QUEUE_DEPTH, MIN_QUEUE_DEPTH, MAX_QUEUE_DEPTH),
                uri.booleanOption("data-digest", false));
    }

    /** Checks the options against a RAM layout: every page must fit a batch and a chunk. */
    void check(TransportUri uri, RamLayout layout) {
        for (RegionDescriptor d : layout.descriptors()) {
            if (d.pageSize() > batchBytes) {
                throw new TransportException(Kind.INVALID_URI, "batch-bytes=" + batchBytes + " in '" + uri.text() + "' is smaller than region '"
                        + d.name() + "''s page size " + d.pageSize() + "; raise batch-bytes");
            }
            if (!pinAll && d.pageSize() > chunkBytes) {
                throw new TransportException(Kind.INVALID_URI, "chunk-bytes=" + chunkBytes + " in '" + uri.text() + "' is smaller than region '"
                        + d.name() + "''s page size " + d.pageSize() + "; raise chunk-bytes or use pin-all=true");
            }
        }
    }
}
