package io.pagewire.transport.spi;

import java.util.Map;
import java.util.Set;

/**
 * A transport, found by {@link java.util.ServiceLoader} and chosen by URI scheme. A new
 * transport is a jar on the class or module path that provides this service.
 *
 * <p>{@link Transports} parses the URI and rejects options the provider does not list in
 * {@link #options()} before calling {@link #connect} or {@link #listen}, so a provider only
 * needs to validate option values.
 */
public interface TransportProvider {

    /** @return the URI scheme this provider serves, e.g. {@code tcp} */
    String scheme();

    /**
     * @return the URI options this provider accepts, name to one-line description
     *         (shown in error messages and {@code --help})
     */
    Map<String, String> options();

    /** @return what connections of this transport can do */
    Set<Capability> capabilities();

    /**
     * @return null when the transport can run here, else why not and what to install
     *         (probed once; e.g. a missing native library or device)
     */
    default String unavailabilityCause() {
        return null;
    }

    /**
     * Connects as the source: the side that sends pages.
     *
     * @param uri the parsed URI (scheme and option names already checked)
     * @param context the connection context, concluded
     * @return a connection that has completed its handshake
     */
    Connection connect(TransportUri uri, TransportContext context);

    /**
     * Listens as the destination: the side that receives pages.
     *
     * @param uri the parsed URI (scheme and option names already checked)
     * @param context the context (layout, timeouts), concluded
     * @return a listener; {@link Listener#accept} yields connections
     */
    Listener listen(TransportUri uri, TransportContext context);
}
