package io.pagewire.transport.unix;

import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.stream.StreamListener;
import io.pagewire.transport.spi.wire.Wire;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The options of a {@code unix:///path} URI, parsed and validated in one place.
 *
 * @param channels background sockets (source chooses; the destination follows the handshake)
 * @param dataDigest CRC32C over page data (source chooses; off by default: the kernel copies locally)
 * @param batchBytes largest page batch per frame (source chooses)
 * @param queueDepth background batches queued ahead of the sender threads
 * @param bufferBytes SO_SNDBUF and SO_RCVBUF of background sockets, 0 = kernel default
 * @param backgroundNice nice value of the background threads (0 = as the JVM)
 * @param shareMemory hand memfd- and file-backed regions over instead of copying them (both sides say so)
 * @param handshakeTimeoutMs destination: overall deadline of a source's handshake
 */
record UnixOptions(int channels, boolean dataDigest, int batchBytes, int queueDepth, int bufferBytes, int backgroundNice,
                   boolean shareMemory, long handshakeTimeoutMs) {

    static final Map<String, String> DESCRIPTIONS;

    static {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("channels", "background sockets, 1.." + Wire.MAX_CHANNELS + " (default 1; source only)");
        m.put("data-digest", "true|false: CRC32C over page data (default false: the data never leaves this host's kernel; source only)");
        m.put("batch-bytes", "largest page batch per frame, a power of two from 4k to 16m (default 256k; source only)");
        m.put("queue-depth", "background batches queued ahead of the sender threads (default 16)");
        m.put("buffer-bytes", "SO_SNDBUF and SO_RCVBUF of background sockets in bytes (default: kernel default)");
        m.put("background-nice", "nice value of the background sender/receiver threads, 0..19 (default 10)");
        m.put("share-memory", "true|false (default false): hand regions backed by a memfd or a file to the destination"
                + " (SCM_RIGHTS) instead of copying their pages; the destination must listen with it too");
        m.put(StreamListener.HANDSHAKE_TIMEOUT_OPTION, StreamListener.HANDSHAKE_TIMEOUT_DESCRIPTION);
        DESCRIPTIONS = Map.copyOf(m);
    }

    static UnixOptions parse(TransportUri uri) {
        uri.requirePath();
        int batch = (int) uri.longOption("batch-bytes", Wire.DEFAULT_FRAME_PAYLOAD, 4096, Wire.MAX_FRAME_PAYLOAD);
        if (Integer.bitCount(batch) != 1) {
            throw uri.badOption("batch-bytes", uri.options().get("batch-bytes"), "a power of two from 4k to 16m");
        }
        return new UnixOptions(
                uri.intOption("channels", 1, 1, Wire.MAX_CHANNELS),
                uri.booleanOption("data-digest", false),
                batch,
                uri.intOption("queue-depth", 16, 1, 4096),
                uri.intOption("buffer-bytes", 0, 0, 1 << 30),
                uri.intOption("background-nice", 10, 0, 19),
                uri.booleanOption("share-memory", false),
                StreamListener.handshakeTimeoutMs(uri));
    }
}
