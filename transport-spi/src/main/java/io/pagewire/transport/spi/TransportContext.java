package io.pagewire.transport.spi;

import io.pagewire.transport.spi.kit.Authentication;

import java.util.concurrent.TimeUnit;

/**
 * Settings for one connection or listener, with fluent accessors in the Aeron style
 * ({@code peerTimeoutNs(x)} sets, {@code peerTimeoutNs()} reads) and one {@link #conclude()}
 * that validates and fails early naming the bad value. Defaults come from system properties:
 * <table>
 * <caption>System properties</caption>
 * <tr><th>property</th><th>default</th><th>meaning</th></tr>
 * <tr><td>pagewire.connect.timeout.ms</td><td>10000</td><td>connect and handshake</td></tr>
 * <tr><td>pagewire.heartbeat.interval.ms</td><td>500</td><td>urgent-lane heartbeat when idle</td></tr>
 * <tr><td>pagewire.peer.timeout.ms</td><td>5000</td><td>no frame from the peer for this long: the connection fails</td></tr>
 * </table>
 * A context is used by one connect or listen call; do not share one between threads while
 * configuring it.
 */
public final class TransportContext {
    private RamLayout layout;
    private MessageHandler handler;
    private Authentication authentication;
    private long connectTimeoutNs = msProperty("pagewire.connect.timeout.ms", 10_000);
    private long heartbeatIntervalNs = msProperty("pagewire.heartbeat.interval.ms", 500);
    private long peerTimeoutNs = msProperty("pagewire.peer.timeout.ms", 5_000);
    private boolean concluded;

    private static long msProperty(String name, long defaultMs) {
        String v = System.getProperty(name);
        if (v == null) {
            return TimeUnit.MILLISECONDS.toNanos(defaultMs);
        }
        try {
            return TimeUnit.MILLISECONDS.toNanos(Long.parseLong(v.strip()));
        } catch (NumberFormatException e) {
            throw new TransportException(TransportException.Kind.INVALID_CONFIG,
                    "system property " + name + "=" + v + " is not a number of milliseconds");
        }
    }

    /** @return the RAM layout (required) */
    public RamLayout layout() {
        return layout;
    }

    /** @param layout the RAM this connection moves @return this */
    public TransportContext layout(RamLayout layout) {
        this.layout = layout;
        return this;
    }

    /** @return the message handler of a source connection (on the destination it is given to {@link Listener#accept}) */
    public MessageHandler handler() {
        return handler;
    }

    /** @param handler receives the peer's messages @return this */
    public TransportContext handler(MessageHandler handler) {
        this.handler = handler;
        return this;
    }

    /**
     * @return how this side proves itself and what it demands of the peer, or null for no
     *         authentication (set from the URI's {@code psk-file}, {@code tls-creds}, ... options by
     *         {@link Transports}, or here by an embedding agent)
     */
    public Authentication authentication() {
        return authentication;
    }

    /** @param authentication this side's credentials, or null for none @return this */
    public TransportContext authentication(Authentication authentication) {
        this.authentication = authentication;
        return this;
    }

    /** @return connect and handshake timeout */
    public long connectTimeoutNs() {
        return connectTimeoutNs;
    }

    /** @param ns connect and handshake timeout @return this */
    public TransportContext connectTimeoutNs(long ns) {
        this.connectTimeoutNs = ns;
        return this;
    }

    /** @return interval of urgent-lane heartbeats when nothing else is sent */
    public long heartbeatIntervalNs() {
        return heartbeatIntervalNs;
    }

    /** @param ns heartbeat interval @return this */
    public TransportContext heartbeatIntervalNs(long ns) {
        this.heartbeatIntervalNs = ns;
        return this;
    }

    /** @return silence from the peer after which the connection fails */
    public long peerTimeoutNs() {
        return peerTimeoutNs;
    }

    /** @param ns peer timeout @return this */
    public TransportContext peerTimeoutNs(long ns) {
        this.peerTimeoutNs = ns;
        return this;
    }

    /**
     * Validates the settings.
     *
     * @return this
     * @throws TransportException {@code INVALID_CONFIG} naming the bad value
     */
    public TransportContext conclude() {
        if (concluded) {
            return this;
        }
        if (layout == null) {
            throw invalid("no RAM layout: call layout(RamLayout.of(...)) before connecting or listening");
        }
        if (connectTimeoutNs <= 0) {
            throw invalid("connectTimeoutNs=" + connectTimeoutNs + " must be positive");
        }
        if (heartbeatIntervalNs < TimeUnit.MILLISECONDS.toNanos(1)) {
            throw invalid("heartbeatIntervalNs=" + heartbeatIntervalNs + " must be at least 1 ms");
        }
        if (peerTimeoutNs < 2 * heartbeatIntervalNs) {
            throw invalid("peerTimeoutNs=" + peerTimeoutNs + " must be at least twice heartbeatIntervalNs=" + heartbeatIntervalNs);
        }
        if (peerTimeoutNs > TimeUnit.HOURS.toNanos(1)) {
            throw invalid("peerTimeoutNs=" + peerTimeoutNs + " is over an hour");
        }
        concluded = true;
        return this;
    }

    private static TransportException invalid(String message) {
        return new TransportException(TransportException.Kind.INVALID_CONFIG, message);
    }
}
