package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.stream.StreamListener;
import io.pagewire.transport.spi.wire.Wire;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The options of a {@code tcp://} URI, parsed and validated in one place.
 *
 * @param channels background connections (source chooses; the destination follows the handshake)
 * @param dataDigest CRC32C over page data (source chooses)
 * @param batchBytes largest page batch per frame (source chooses)
 * @param queueDepth background batches queued ahead of the sender threads
 * @param sndbufBytes SO_SNDBUF of background sockets, 0 = kernel default (autotuning)
 * @param rcvbufBytes SO_RCVBUF of background sockets, 0 = kernel default (autotuning)
 * @param notSentLowatBytes TCP_NOTSENT_LOWAT of background sockets, 0 = kernel default
 * @param urgentDscp DSCP mark of urgent packets (46 = EF), -1 = none
 * @param urgentPriority SO_PRIORITY of the urgent socket, -1 = none
 * @param backgroundNice nice value of the background threads (0 = as the JVM)
 * @param backgroundMaxRate cap on the background lane's sending rate, bytes per second over all channels (0 = none; source only)
 * @param sharedChannel {@code urgent-channel=shared}: no urgent connection; urgent frames travel on
 *        background channel 0 between its frames (source chooses; the destination follows the handshake)
 * @param handshakeTimeoutMs destination: overall deadline of a source's handshake
 * @param tls {@code tls=on}: TLS 1.3 on every connection (both sides must say so)
 */
record TcpOptions(int channels, boolean dataDigest, int batchBytes, int queueDepth, int sndbufBytes, int rcvbufBytes,
                  int notSentLowatBytes, int urgentDscp, int urgentPriority, int backgroundNice, long backgroundMaxRate,
                  boolean sharedChannel, long handshakeTimeoutMs, boolean tls) {

    /** Default background connections: measured on loopback with 2 cores (see docs/tuning.md). */
    static final int DEFAULT_CHANNELS = 2;
    /** Default nice value of background threads: see docs/tuning.md. */
    static final int DEFAULT_BACKGROUND_NICE = 10;

    static final Map<String, String> DESCRIPTIONS;

    static {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("channels", "background TCP connections, 1.." + Wire.MAX_CHANNELS + " (default " + DEFAULT_CHANNELS + "; source only)");
        m.put("data-digest", "true|false: CRC32C over page data (default true; source only; false sends pages straight from RAM)");
        m.put("batch-bytes", "largest page batch per frame, e.g. 256k (default 256k; source only)");
        m.put("queue-depth", "background batches queued ahead of the sender threads (default 16)");
        m.put("sndbuf", "SO_SNDBUF of background sockets in bytes (default: kernel autotuning)");
        m.put("rcvbuf", "SO_RCVBUF of background sockets in bytes (default: kernel autotuning)");
        m.put("notsent-lowat", "TCP_NOTSENT_LOWAT of background sockets in bytes (default 1m; 0 = kernel default)");
        m.put("urgent-dscp", "DSCP mark of urgent-lane packets, 0..63 (default 46 = EF; -1 = none)");
        m.put("urgent-priority", "SO_PRIORITY of the urgent socket, 0..6 (default 6; -1 = none)");
        m.put("background-nice", "nice value of the background sender/receiver threads, 0..19 (default " + DEFAULT_BACKGROUND_NICE
                + "): lets urgent threads win the CPU under load");
        m.put("background-max-rate", "cap on the background lane's rate in bytes/s over all channels, e.g. 110m (default 0 = none; source"
                + " only): paced by the kernel (SO_MAX_PACING_RATE), so a link slower than the host leaves no standing queue");
        m.put("urgent-channel", "dedicated|shared (default dedicated; source only): shared sends urgent frames on background channel 0,"
                + " behind its bulk data, with no priority (for comparison, like QEMU postcopy without postcopy-preempt)");
        m.put("tls", "on|off (default off; both sides the same): TLS 1.3 (JDK SSLEngine) on the urgent and every background connection;"
                + " needs certificates (tls-creds=DIR or cert=,key=,ca=), which authenticate the TLS session both ways");
        m.put(StreamListener.HANDSHAKE_TIMEOUT_OPTION, StreamListener.HANDSHAKE_TIMEOUT_DESCRIPTION);
        DESCRIPTIONS = Map.copyOf(m);
    }

    static TcpOptions parse(TransportUri uri) {
        int batch = (int) uri.longOption("batch-bytes", Wire.DEFAULT_FRAME_PAYLOAD, 4096, Wire.MAX_FRAME_PAYLOAD);
        if (Integer.bitCount(batch) != 1) {
            throw uri.badOption("batch-bytes", uri.options().get("batch-bytes"), "a power of two from 4k to 16m");
        }
        return new TcpOptions(
                uri.intOption("channels", DEFAULT_CHANNELS, 1, Wire.MAX_CHANNELS),
                uri.booleanOption("data-digest", true),
                batch,
                uri.intOption("queue-depth", 16, 1, 4096),
                uri.intOption("sndbuf", 0, 0, 1 << 30),
                uri.intOption("rcvbuf", 0, 0, 1 << 30),
                uri.intOption("notsent-lowat", 1 << 20, 0, 1 << 30),
                uri.intOption("urgent-dscp", 46, -1, 63),
                uri.intOption("urgent-priority", 6, -1, 6),
                uri.intOption("background-nice", DEFAULT_BACKGROUND_NICE, 0, 19),
                uri.longOption("background-max-rate", 0, 0, 1L << 40),
                sharedChannel(uri),
                StreamListener.handshakeTimeoutMs(uri),
                tls(uri));
    }

    private static boolean tls(TransportUri uri) {
        String v = uri.stringOption("tls", "off");
        return switch (v) {
            case "on" -> true;
            case "off" -> false;
            default -> throw uri.badOption("tls", v, "on (TLS 1.3 on every connection; needs tls-creds=DIR or cert=,key=,ca=) or off");
        };
    }

    private static boolean sharedChannel(TransportUri uri) {
        String v = uri.stringOption("urgent-channel", "dedicated");
        return switch (v) {
            case "dedicated" -> false;
            case "shared" -> true;
            default -> throw uri.badOption("urgent-channel", v, "dedicated (the urgent lane has its own connection, the default) or shared"
                    + " (urgent frames travel on background channel 0, with no priority)");
        };
    }
}
