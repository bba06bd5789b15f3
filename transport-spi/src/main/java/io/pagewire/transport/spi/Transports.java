package io.pagewire.transport.spi;

import io.pagewire.transport.spi.kit.Authentication;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.TreeMap;

/**
 * The entry point: finds the provider for a URI's scheme and connects or listens.
 * <pre>{@code
 * try (Connection c = Transports.connect("tcp://dst:4444?channels=2",
 *         new TransportContext().layout(ram).handler(handler))) { ... }
 * try (Listener l = Transports.listen("tcp://0.0.0.0:4444", new TransportContext().layout(ram))) {
 *     Connection c = l.accept(handler, Duration.ofSeconds(30)); ...
 * }
 * }</pre>
 */
public final class Transports {
    private static final System.Logger LOG = System.getLogger(Transports.class.getName());
    private Transports() {
    }

    /**
     * @return the providers on the class or module path, by scheme
     */
    public static Map<String, TransportProvider> providers() {
        Map<String, TransportProvider> byScheme = new TreeMap<>();
        for (TransportProvider p : ServiceLoader.load(TransportProvider.class, Transports.class.getClassLoader())) {
            TransportProvider previous = byScheme.putIfAbsent(p.scheme(), p);
            if (previous != null && previous.getClass() != p.getClass()) {
                throw new TransportException(TransportException.Kind.INVALID_CONFIG,
                        "two transport providers claim scheme '" + p.scheme() + "': "
                                + previous.getClass().getName() + " and " + p.getClass().getName()
                                + "; remove one of their jars from the class path");
            }
        }
        return byScheme;
    }

    /**
     * Finds the provider for a URI, checking its scheme and option names.
     *
     * @param uri the parsed URI
     * @return its provider
     * @throws TransportException {@code INVALID_URI} naming the known schemes or options,
     *         {@code UNAVAILABLE} when the provider cannot run here
     */
    public static TransportProvider provider(TransportUri uri) {
        return provider(uri, providers());
    }

    /** As {@link #provider(TransportUri)}, choosing among {@code all} (for tests). */
    static TransportProvider provider(TransportUri uri, Map<String, TransportProvider> all) {
        TransportProvider p = all.get(uri.scheme());
        if (p == null) {
            throw new TransportException(TransportException.Kind.INVALID_URI,
                    "unknown transport scheme '" + uri.scheme() + "' in '" + uri.text() + "'; known schemes: "
                            + (all.isEmpty() ? "none (no transport jar on the class path)" : String.join(", ", all.keySet())));
        }
        List<String> unknown = new ArrayList<>();
        for (String name : uri.options().keySet()) {
            if (!p.options().containsKey(name) && !Authentication.OPTIONS.containsKey(name)) {
                unknown.add(name);
            }
        }
        if (!unknown.isEmpty()) {
            String name = unknown.getFirst();
            List<String> known = new ArrayList<>(p.options().keySet());
            known.addAll(Authentication.OPTIONS.keySet());
            String hint = closest(name, known);
            throw new TransportException(TransportException.Kind.INVALID_URI,
                    "unknown option '" + name + "' for " + uri.scheme() + ": URIs in '" + uri.text() + "'"
                            + (hint == null ? "" : " (did you mean '" + hint + "'?)")
                            + "; known options: " + (p.options().isEmpty() ? "none" : String.join(", ", new TreeMap<>(p.options()).keySet()))
                            + "; authentication (every transport): " + String.join(", ", Authentication.OPTIONS.keySet()));
        }
        String cause = p.unavailabilityCause();
        if (cause != null) {
            throw new TransportException(TransportException.Kind.UNAVAILABLE,
                    uri.scheme() + ": transport unavailable here: " + cause);
        }
        return p;
    }

    /**
     * Connects as the source.
     *
     * @param uri the destination URI
     * @param context layout, handler and timeouts
     * @return a connection that has completed its handshake
     */
    public static Connection connect(String uri, TransportContext context) {
        TransportUri parsed = TransportUri.parse(uri);
        TransportProvider p = provider(parsed);
        withAuthentication(context, parsed, Role.SOURCE);
        return p.connect(parsed, context.conclude());
    }

    /**
     * Listens as the destination.
     *
     * @param uri the URI to listen on (port 0 picks a free port; see {@link Listener#uri()})
     * @param context layout and timeouts
     * @return the listener
     */
    public static Listener listen(String uri, TransportContext context) {
        TransportUri parsed = TransportUri.parse(uri);
        TransportProvider p = provider(parsed);
        withAuthentication(context, parsed, Role.DESTINATION);
        Listener l = p.listen(parsed, context.conclude());
        String risk = unauthenticatedRisk(parsed, context);
        if (risk != null) {
            LOG.log(System.Logger.Level.WARNING, risk);
        }
        return l;
    }

    /**
     * @return a warning naming the risk when a listener on {@code uri} takes sources without authentication from
     *         beyond this machine (a non-loopback host, or Aeron endpoint), else null
     */
    public static String unauthenticatedRisk(TransportUri uri, TransportContext context) {
        if (context.authentication() != null) {
            return null;
        }
        String host = uri.host();
        String endpoint = uri.options().get("endpoint");
        if (host == null && endpoint != null && endpoint.lastIndexOf(':') > 0) {
            host = endpoint.substring(0, endpoint.lastIndexOf(':')).replace("[", "").replace("]", "");
        }
        if (host == null || loopback(host)) {
            return null; // unix sockets: the socket file's permissions decide; loopback: this machine only
        }
        return "listening on " + uri.text() + " WITHOUT AUTHENTICATION: anyone who can reach " + host + " can become the source"
                + " and write any content into this RAM; add psk-file=PATH or tls-creds=DIR (docs/security.md)";
    }

    /** Sets the context's authentication from the URI's options unless the caller set one. */
    private static void withAuthentication(TransportContext context, TransportUri uri, Role role) {
        Authentication a = Authentication.fromUri(uri, role);
        if (a != null) {
            if (context.authentication() != null) {
                throw new TransportException(TransportException.Kind.INVALID_CONFIG, "'" + uri.text()
                        + "' names credentials, and so does the context: give them once");
            }
            context.authentication(a);
        }
    }

    /** @return whether {@code host} is a loopback address (only this machine can reach it) */
    public static boolean loopback(String host) {
        if (host.equalsIgnoreCase("localhost")) {
            return true;
        }
        try {
            return InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            return false;
        }
    }

    /** Nearest name by edit distance, if it is close enough to be a likely typo. */
    static String closest(String name, Iterable<String> candidates) {
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (String c : candidates) {
            int d = editDistance(name, c);
            if (d < bestDistance) {
                bestDistance = d;
                best = c;
            }
        }
        return bestDistance <= Math.max(2, name.length() / 3) ? best : null;
    }

    private static int editDistance(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost);
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
