package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.wire.Wire;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The options of an {@code aeron:udp?...} or {@code aeron:ipc?...} URI, parsed and validated in one place.
 *
 * <p>Two kinds of options share the URI, as in Aeron's own channel URIs ({@code |} or {@code &} between them):
 * <ul>
 * <li><b>Aeron channel parameters</b> ({@link #AERON_PARAMS}: {@code mtu}, {@code term-length}, {@code so-sndbuf},
 *     ...) are validated here and passed through to the background stream's channel. Each side applies the ones
 *     that concern its end: the source's publication takes {@code mtu}, {@code term-length}, {@code pub-wnd},
 *     {@code so-sndbuf}; the destination's subscription takes {@code rcv-wnd}, {@code so-rcvbuf}.</li>
 * <li><b>pagewire options</b> ({@code aeron.dir}, {@code stream-id}, {@code data-digest}, {@code batch-bytes},
 *     {@code background-nice}, {@code urgent-driver}) configure the transport itself.</li>
 * </ul>
 * Every other name is refused, naming the known ones (Aeron parameters that would break the transport, such as
 * {@code reliable=false} or {@code session-id}, are deliberately not accepted).
 *
 * @param ipc true for {@code aeron:ipc}, false for {@code aeron:udp}
 * @param host endpoint host (UDP), or null
 * @param port endpoint port (UDP), or -1
 * @param aeronDir external media driver directory, or null for the embedded drivers
 * @param streamId the listener's stream id (rendezvous stream)
 * @param streamIdGiven whether {@code stream-id} was in the URI
 * @param dataDigest CRC32C over page data
 * @param batchBytes largest PAGES payload (negotiated; also bounds page requests)
 * @param backgroundNice nice value of the destination's background receiver thread
 * @param separateUrgentDriver urgent streams in their own driver (true) or in the bulk driver
 * @param stallTimeoutMs a blocking background send fails after this long without progress (0 = never)
 * @param mtu MTU of every stream's channel
 * @param termLength term length of the background stream
 * @param pubWindow publication window of the background stream: the bound on offered, unsent page data
 * @param rcvWindow receiver window of the background stream
 * @param soSndbuf SO_SNDBUF of the background stream (0 = driver default)
 * @param soRcvbuf SO_RCVBUF of the background stream (0 = driver default)
 * @param sparse sparse log files for the background stream
 * @param passThrough other Aeron channel parameters (interface, nak-delay, max-resend), verbatim
 */
record AeronOptions(boolean ipc, String host, int port, String aeronDir, int streamId, boolean streamIdGiven, boolean dataDigest,
                    int batchBytes, int backgroundNice, boolean separateUrgentDriver, long stallTimeoutMs, int mtu, int termLength, int pubWindow,
                    int rcvWindow, int soSndbuf, int soRcvbuf, boolean sparse, Map<String, String> passThrough, boolean frameMac) {

    /** The listener's stream id unless {@code stream-id} says otherwise. */
    static final int DEFAULT_STREAM_ID = 0x5057_0001;
    /** Default MTU: one datagram carries a frame of 15 pages of 4 KiB (loopback and jumbo-frame LANs; see docs/aeron.md). */
    static final int DEFAULT_MTU = 65504;
    static final int DEFAULT_TERM_LENGTH = 16 << 20;
    static final int DEFAULT_PUB_WINDOW = 4 << 20;
    static final int DEFAULT_RCV_WINDOW = 2 << 20;
    static final int DEFAULT_SO_SNDBUF = 2 << 20;
    static final int DEFAULT_SO_RCVBUF = 4 << 20;
    static final int DEFAULT_BACKGROUND_NICE = 10;
    static final long DEFAULT_STALL_TIMEOUT_MS = 30_000;

    /** Aeron channel parameters accepted and passed through to the background channel. */
    static final Set<String> AERON_PARAMS = Set.of("mtu", "term-length", "pub-wnd", "rcv-wnd", "so-sndbuf", "so-rcvbuf", "sparse",
            "interface", "nak-delay", "max-resend");
    private static final Set<String> UDP_ONLY = Set.of("endpoint", "rcv-wnd", "so-sndbuf", "so-rcvbuf", "interface", "nak-delay", "max-resend");

    static final Map<String, String> DESCRIPTIONS;

    static {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("endpoint", "host:port of the destination (udp only; the listener binds it, port 0 picks a free port)");
        m.put("aeron.dir", "directory of a running (external) Aeron media driver to use instead of the embedded drivers");
        m.put("stream-id", "the listener's stream id, 0.." + Integer.MAX_VALUE + " (default " + DEFAULT_STREAM_ID
                + "; 0 = pick a free one, reported by the listener)");
        m.put("data-digest", "true|false: CRC32C over page data (default true; source only)");
        m.put("batch-bytes", "largest page batch per PAGES frame and per page request, a power of two from 4k to 16m (default 256k;"
                + " source only)");
        m.put("frame-mac", "on|off (default off): a 16-byte HMAC-SHA256 after every frame, keyed per session, direction and stream from"
                + " the authenticated handshake; a changed, spoofed or replayed frame fails the connection. Needs psk-file= or certificates."
                + " The source asks for it; a destination with on refuses sources without it");
        m.put("background-nice", "nice value of the destination's background receiver thread, 0..19 (default " + DEFAULT_BACKGROUND_NICE + ")");
        m.put("stall-timeout-ms", "a blocking background send fails (TIMEOUT) after this many ms without progress, though the peer"
                + " answers heartbeats (default " + DEFAULT_STALL_TIMEOUT_MS + "; 0 = wait as long as the peer lives)");
        m.put("urgent-driver", "separate|shared: urgent streams in their own embedded media driver (default separate) or in the bulk one");
        m.put("mtu", "Aeron: MTU of every stream, a multiple of 32 up to 65504 (default " + DEFAULT_MTU + ")");
        m.put("term-length", "Aeron: term length of the background stream, a power of two from 64k to 1g, at least 8 x mtu (default 16m)");
        m.put("pub-wnd", "Aeron: publication window of the background stream: bound on offered, unsent page data (default 4m)");
        m.put("rcv-wnd", "Aeron: receiver window of the background stream (default 2m; destination)");
        m.put("so-sndbuf", "Aeron: SO_SNDBUF of the background stream (default 2m; source; capped by net.core.wmem_max)");
        m.put("so-rcvbuf", "Aeron: SO_RCVBUF of the background stream (default 4m; destination; capped by net.core.rmem_max)");
        m.put("sparse", "Aeron: true|false: sparse log buffer files for the background stream (default false: allocated up front)");
        m.put("interface", "Aeron: local interface (address[:port][/prefix]) the udp streams use");
        m.put("nak-delay", "Aeron: delay before a NAK for lost data, e.g. 100us (udp)");
        m.put("max-resend", "Aeron: most retransmissions in flight per stream (udp)");
        DESCRIPTIONS = Map.copyOf(m);
    }

    private static boolean frameMac(TransportUri uri) {
        String v = uri.stringOption("frame-mac", "off");
        return switch (v) {
            case "on" -> true;
            case "off" -> false;
            default -> throw uri.badOption("frame-mac", v, "on (a MAC after every frame; needs authentication) or off");
        };
    }

    /** @throws TransportException {@code INVALID_URI} for {@code frame-mac=on} without credentials */
    void checkFrameMac(TransportUri uri, TransportContext context) {
        if (frameMac && context.authentication() == null) {
            throw new TransportException(Kind.INVALID_URI, "'" + uri.text() + "': frame-mac=on needs authentication (psk-file=PATH,"
                    + " tls-creds=DIR or cert=,key=,ca=): its keys come from the authenticated handshake");
        }
    }

    /**
     * Parses and validates an {@code aeron:} URI.
     *
     * @param uri the parsed URI (option names already checked against {@link #DESCRIPTIONS})
     * @param listening true for a listen URI (port 0 allowed)
     * @return the options
     */
    static AeronOptions parse(TransportUri uri, boolean listening) {
        if (uri.media() == null) {
            throw new TransportException(Kind.INVALID_URI, "malformed URI '" + uri.text() + "': Aeron URIs have the form"
                    + " aeron:udp?endpoint=host:port or aeron:ipc, not aeron://host:port"
                    + (uri.host() != null ? "; write aeron:udp?endpoint=" + hostPort(uri.host(), Math.max(uri.port(), 0)) : ""));
        }
        boolean ipc;
        switch (uri.media()) {
            case "udp" -> ipc = false;
            case "ipc" -> ipc = true;
            default -> throw new TransportException(Kind.INVALID_URI, "unknown Aeron media '" + uri.media() + "' in '" + uri.text()
                    + "': expected aeron:udp?endpoint=host:port or aeron:ipc");
        }
        String host = null;
        int port = -1;
        if (ipc) {
            for (String name : uri.options().keySet()) {
                if (UDP_ONLY.contains(name)) {
                    throw uri.badOption(name, uri.options().get(name), "no value: '" + name + "' applies to aeron:udp only, not aeron:ipc");
                }
            }
        } else {
            String endpoint = uri.options().get("endpoint");
            if (endpoint == null) {
                throw new TransportException(Kind.INVALID_URI, "malformed URI '" + uri.text()
                        + "': aeron:udp needs an endpoint, e.g. aeron:udp?endpoint=127.0.0.1:40123 (port 0 to listen on a free port)");
            }
            int colon = endpoint.lastIndexOf(':');
            if (colon <= 0) {
                throw uri.badOption("endpoint", endpoint, "host:port, e.g. 127.0.0.1:40123 or [::1]:40123");
            }
            host = endpoint.substring(0, colon);
            String portText = endpoint.substring(colon + 1);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            } else if (host.contains(":")) {
                throw uri.badOption("endpoint", endpoint, "an IPv6 address in brackets, e.g. [::1]:40123");
            }
            if (host.isEmpty() || portText.isEmpty() || portText.length() > 5 || !portText.chars().allMatch(Character::isDigit)) {
                throw uri.badOption("endpoint", endpoint, "host:port with a port in 0..65535");
            }
            port = Integer.parseInt(portText);
            if (port > 65535) {
                throw uri.badOption("endpoint", endpoint, "host:port with a port in 0..65535");
            }
            if (port == 0 && !listening) {
                throw new TransportException(Kind.INVALID_URI, "cannot connect to port 0 in '" + uri.text()
                        + "'; give the destination's port (the listener reports it)");
            }
        }
        String dir = uri.options().get("aeron.dir");
        if (dir != null && dir.isBlank()) {
            throw uri.badOption("aeron.dir", dir, "the directory of a running Aeron media driver");
        }
        int streamId = (int) uri.longOption("stream-id", DEFAULT_STREAM_ID, 0, Integer.MAX_VALUE);
        if (streamId == 0 && !listening) {
            throw uri.badOption("stream-id", "0", "the listener's stream id (0 only picks a free one when listening)");
        }
        int batch = (int) uri.longOption("batch-bytes", Wire.DEFAULT_FRAME_PAYLOAD, 4096, Wire.MAX_FRAME_PAYLOAD);
        if (Integer.bitCount(batch) != 1) {
            throw uri.badOption("batch-bytes", uri.options().get("batch-bytes"), "a power of two from 4k to 16m");
        }
        String urgentDriver = uri.stringOption("urgent-driver", "separate");
        if (!urgentDriver.equals("separate") && !urgentDriver.equals("shared")) {
            throw uri.badOption("urgent-driver", urgentDriver, "separate or shared");
        }
        int mtu = (int) uri.longOption("mtu", DEFAULT_MTU, 128, 65504);
        if (mtu % 32 != 0) {
            throw uri.badOption("mtu", uri.options().get("mtu"), "a multiple of 32 (Aeron's frame alignment) up to 65504");
        }
        int termLength = (int) uri.longOption("term-length", DEFAULT_TERM_LENGTH, 64 << 10, 1 << 30);
        if (Integer.bitCount(termLength) != 1) {
            throw uri.badOption("term-length", uri.options().get("term-length"), "a power of two from 64k to 1g");
        }
        if (termLength / 8 < mtu) {
            throw uri.badOption("term-length", uri.options().getOrDefault("term-length", Integer.toString(termLength)),
                    "at least 8 x mtu = " + 8L * mtu + " (Aeron's largest message is a term / 8; one must hold a datagram)");
        }
        int pubWindow = (int) uri.longOption("pub-wnd", Math.min(DEFAULT_PUB_WINDOW, termLength / 2), mtu, termLength / 2);
        int rcvWindow = (int) uri.longOption("rcv-wnd", Math.min(DEFAULT_RCV_WINDOW, termLength / 2), mtu, termLength / 2);
        int sndbuf = (int) uri.longOption("so-sndbuf", DEFAULT_SO_SNDBUF, 0, 1 << 30);
        int rcvbuf = (int) uri.longOption("so-rcvbuf", DEFAULT_SO_RCVBUF, 0, 1 << 30);
        boolean sparse = uri.booleanOption("sparse", false);
        Map<String, String> pass = new LinkedHashMap<>();
        String iface = uri.options().get("interface");
        if (iface != null) {
            if (iface.isEmpty() || iface.contains("|") || iface.contains("&")) {
                throw uri.badOption("interface", iface, "address[:port][/prefix], e.g. 192.168.1.0/24");
            }
            pass.put("interface", iface);
        }
        String nakDelay = uri.options().get("nak-delay");
        if (nakDelay != null) {
            try {
                org.agrona.SystemUtil.parseDuration("nak-delay", nakDelay);
            } catch (RuntimeException e) {
                throw uri.badOption("nak-delay", nakDelay, "a duration such as 100us, 1ms or 50000 (ns)");
            }
            pass.put("nak-delay", nakDelay);
        }
        if (uri.options().containsKey("max-resend")) {
            pass.put("max-resend", Integer.toString(uri.intOption("max-resend", 16, 1, 1024)));
        }
        return new AeronOptions(ipc, host, port, dir, streamId, uri.options().containsKey("stream-id"), uri.booleanOption("data-digest", true),
                batch, uri.intOption("background-nice", DEFAULT_BACKGROUND_NICE, 0, 19), urgentDriver.equals("separate"),
                uri.longOption("stall-timeout-ms", DEFAULT_STALL_TIMEOUT_MS, 0, 24L * 3600 * 1000), mtu, termLength, pubWindow, rcvWindow, sndbuf, rcvbuf, sparse, Map.copyOf(pass),
                frameMac(uri));
    }

    /** @return {@code host:port}, with brackets around an IPv6 host */
    static String hostPort(String host, int port) {
        return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }

    /** Term length of the urgent and handshake streams. */
    static final int URGENT_TERM_LENGTH = 4 << 20;
    /** Receiver window of the urgent streams. */
    static final int URGENT_RCV_WINDOW = 1 << 20;
    /** SO_RCVBUF of the urgent streams. */
    static final int URGENT_SO_RCVBUF = 1 << 20;

    /** @return the channel of the background stream at {@code host:port} (UDP) or over IPC */
    String backgroundChannel(String channelHost, int channelPort, boolean publication) {
        StringBuilder sb = new StringBuilder(ipc ? "aeron:ipc?" : "aeron:udp?endpoint=" + hostPort(channelHost, channelPort) + "|");
        sb.append("mtu=").append(mtu).append("|term-length=").append(termLength).append("|sparse=").append(sparse);
        if (publication) {
            sb.append("|pub-wnd=").append(pubWindow);
        }
        if (!ipc) {
            if (publication && soSndbuf > 0) {
                sb.append("|so-sndbuf=").append(soSndbuf);
            }
            if (!publication) {
                sb.append("|rcv-wnd=").append(rcvWindow);
                if (soRcvbuf > 0) {
                    sb.append("|so-rcvbuf=").append(soRcvbuf);
                }
            }
            passThrough.forEach((k, v) -> {
                if (publication || !k.equals("interface")) { // interface picks the sending side's local address
                    sb.append('|').append(k).append('=').append(v);
                }
            });
        }
        return sb.toString();
    }

    /** @return the channel of an urgent or handshake stream at {@code host:port} (UDP) or over IPC */
    String urgentChannel(String channelHost, int channelPort, boolean publication) {
        StringBuilder sb = new StringBuilder(ipc ? "aeron:ipc?" : "aeron:udp?endpoint=" + hostPort(channelHost, channelPort) + "|");
        sb.append("mtu=").append(mtu).append("|term-length=").append(URGENT_TERM_LENGTH).append("|sparse=true");
        if (!ipc) {
            if (!publication) {
                sb.append("|rcv-wnd=").append(URGENT_RCV_WINDOW).append("|so-rcvbuf=").append(URGENT_SO_RCVBUF);
            }
            String iface = passThrough.get("interface");
            if (iface != null && publication) {
                sb.append("|interface=").append(iface);
            }
        }
        return sb.toString();
    }
}
