package io.pagewire.transport.spi;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * A parsed transport URI. Three shapes are accepted:
 * <pre>
 *   scheme://host:port?name=value&amp;name=value      (tcp://, rdma://; host may be an IPv6 literal in [])
 *   scheme:///absolute/path?name=value              (unix:///run/pagewire.sock: no host, a file system path)
 *   scheme:media?name=value|name=value              (aeron:udp?endpoint=h:p, aeron:ipc)
 * </pre>
 * Options may be separated by {@code &} or {@code |} (Aeron's channel convention). Option names
 * are case-sensitive, must be unique, and are checked against the provider's list by
 * {@link Transports}; values are read through the typed accessors, which fail with a message
 * naming the option, the value and what is accepted.
 */
public final class TransportUri {
    private final String text;
    private final String scheme;
    private final String host;      // null for the opaque form
    private final int port;         // -1 when absent
    private final String media;     // null for the hierarchical form
    private final String path;      // only for the path form
    private final Map<String, String> options;

    private TransportUri(String text, String scheme, String host, int port, String media, String path, Map<String, String> options) {
        this.text = text;
        this.scheme = scheme;
        this.host = host;
        this.port = port;
        this.media = media;
        this.path = path;
        this.options = Collections.unmodifiableMap(options);
    }

    /**
     * Parses a URI.
     *
     * @param text the URI
     * @return the parsed URI
     * @throws TransportException of kind {@code INVALID_URI}, naming what is wrong
     */
    public static TransportUri parse(String text) {
        Objects.requireNonNull(text, "uri");
        String s = text.strip();
        if (s.isEmpty()) {
            throw bad(text, "empty URI; expected scheme://host:port[?options] or scheme:media[?options]");
        }
        int colon = s.indexOf(':');
        if (colon <= 0 || s.substring(0, colon).contains("/")) {
            throw bad(text, "no scheme; expected scheme://host:port[?options] or scheme:media[?options]");
        }
        String scheme = s.substring(0, colon);
        if (!scheme.matches("[a-z][a-z0-9+.-]*")) {
            throw bad(text, "scheme '" + scheme + "' must be lower-case letters, digits, '+', '.' or '-'");
        }
        String rest = s.substring(colon + 1);
        int q = rest.indexOf('?');
        String beforeQuery = q < 0 ? rest : rest.substring(0, q);
        Map<String, String> options = q < 0 ? new LinkedHashMap<>() : parseOptions(text, rest.substring(q + 1));
        if (beforeQuery.startsWith("///")) {
            String path = beforeQuery.substring(2);
            if (path.length() < 2 || path.endsWith("/") || path.indexOf('\0') >= 0) {
                throw bad(text, "path '" + path + "' is not an absolute file path; write e.g. " + scheme + ":///run/pagewire.sock");
            }
            return new TransportUri(text, scheme, null, -1, null, path, options);
        }
        if (beforeQuery.startsWith("//")) {
            String authority = beforeQuery.substring(2);
            int slash = authority.indexOf('/');
            if (slash >= 0) {
                if (!authority.substring(slash).equals("/")) {
                    throw bad(text, "a path ('" + authority.substring(slash) + "') is not allowed; options go after '?'");
                }
                authority = authority.substring(0, slash);
            }
            String host;
            String portText;
            if (authority.startsWith("[")) {
                int close = authority.indexOf(']');
                if (close < 0) {
                    throw bad(text, "IPv6 literal has no closing ']'");
                }
                host = authority.substring(1, close);
                String after = authority.substring(close + 1);
                if (!after.isEmpty() && !after.startsWith(":")) {
                    throw bad(text, "expected ':port' after the IPv6 literal, found '" + after + "'");
                }
                portText = after.isEmpty() ? null : after.substring(1);
                if (!host.contains(":")) {
                    throw bad(text, "'[" + host + "]' is not an IPv6 literal");
                }
            } else {
                int c = authority.lastIndexOf(':');
                if (c >= 0 && authority.indexOf(':') != c) {
                    throw bad(text, "an IPv6 address must be written in brackets, e.g. tcp://[::1]:4444");
                }
                host = c < 0 ? authority : authority.substring(0, c);
                portText = c < 0 ? null : authority.substring(c + 1);
            }
            if (host.isEmpty()) {
                throw bad(text, "no host; write e.g. " + scheme + "://127.0.0.1:4444 (or 0.0.0.0 to listen on all addresses)");
            }
            int port = -1;
            if (portText != null) {
                port = parsePort(text, portText);
            }
            return new TransportUri(text, scheme, host, port, null, null, options);
        }
        if (beforeQuery.isEmpty()) {
            throw bad(text, "nothing after '" + scheme + ":'; expected //host:port or a media name");
        }
        if (!beforeQuery.matches("[A-Za-z0-9_.-]+")) {
            throw bad(text, "media '" + beforeQuery + "' must be letters, digits, '_', '.' or '-'");
        }
        return new TransportUri(text, scheme, null, -1, beforeQuery, null, options);
    }

    private static int parsePort(String text, String portText) {
        if (portText.isEmpty() || !portText.chars().allMatch(Character::isDigit) || portText.length() > 5) {
            throw bad(text, "port '" + portText + "' is not a number in 0..65535");
        }
        int port = Integer.parseInt(portText);
        if (port > 65535) {
            throw bad(text, "port " + port + " is out of range 0..65535");
        }
        return port;
    }

    private static Map<String, String> parseOptions(String text, String query) {
        Map<String, String> out = new LinkedHashMap<>();
        if (query.isEmpty()) {
            return out;
        }
        for (String pair : query.split("[&|]", -1)) {
            if (pair.isEmpty()) {
                throw bad(text, "empty option (two separators in a row, or a trailing separator)");
            }
            int eq = pair.indexOf('=');
            if (eq <= 0) {
                throw bad(text, "option '" + pair + "' needs the form name=value");
            }
            String name = pair.substring(0, eq);
            String value = pair.substring(eq + 1);
            if (out.putIfAbsent(name, value) != null) {
                throw bad(text, "option '" + name + "' is given twice");
            }
        }
        return out;
    }

    private static TransportException bad(String text, String why) {
        return new TransportException(TransportException.Kind.INVALID_URI, "malformed URI '" + text + "': " + why);
    }

    /** @return the URI as given */
    public String text() {
        return text;
    }

    /** @return the scheme, e.g. {@code tcp} */
    public String scheme() {
        return scheme;
    }

    /** @return the host of a {@code scheme://host:port} URI (IPv6 without brackets), or null */
    public String host() {
        return host;
    }

    /** @return the port, or -1 when the URI has none */
    public int port() {
        return port;
    }

    /** @return the media of a {@code scheme:media} URI (e.g. {@code udp}), or null */
    public String media() {
        return media;
    }

    /** @return the options in the order given (unmodifiable) */
    public Map<String, String> options() {
        return options;
    }

    /** @return the file system path of a {@code scheme:///path} URI, or null */
    public String path() {
        return path;
    }

    /**
     * @return the path, failing with a clear message when the URI has none
     */
    public String requirePath() {
        if (path == null) {
            throw bad(text, scheme + ": URIs need the form " + scheme + ":///absolute/path (three slashes)");
        }
        return path;
    }

    /**
     * @return the host, failing with a clear message when the URI has none
     */
    public String requireHost() {
        if (host == null) {
            throw bad(text, scheme + ": URIs need the form " + scheme + "://host:port");
        }
        return host;
    }

    /**
     * @return the port, failing with a clear message when the URI has none
     */
    public int requirePort() {
        requireHost();
        if (port < 0) {
            throw bad(text, "no port; write " + scheme + "://" + (host.contains(":") ? "[" + host + "]" : host) + ":PORT");
        }
        return port;
    }

    /**
     * Reads an integer option.
     *
     * @param name option name
     * @param defaultValue value when absent
     * @param min smallest accepted value
     * @param max largest accepted value
     * @return the value
     */
    public long longOption(String name, long defaultValue, long min, long max) {
        String v = options.get(name);
        if (v == null) {
            return defaultValue;
        }
        long value;
        try {
            value = parseSize(v);
        } catch (IllegalArgumentException | ArithmeticException e) {
            throw badOption(name, v, "an integer in " + min + ".." + max + " (k, m, g suffixes allowed)");
        }
        if (value < min || value > max) {
            throw badOption(name, v, "an integer in " + min + ".." + max);
        }
        return value;
    }

    /** As {@link #longOption} for int-sized values. */
    public int intOption(String name, int defaultValue, int min, int max) {
        return (int) longOption(name, defaultValue, min, max);
    }

    /**
     * Reads a boolean option ({@code true|false}).
     *
     * @param name option name
     * @param defaultValue value when absent
     * @return the value
     */
    public boolean booleanOption(String name, boolean defaultValue) {
        String v = options.get(name);
        if (v == null) {
            return defaultValue;
        }
        return switch (v) {
            case "true" -> true;
            case "false" -> false;
            default -> throw badOption(name, v, "true or false");
        };
    }

    /**
     * Reads a string option.
     *
     * @param name option name
     * @param defaultValue value when absent
     * @return the value
     */
    public String stringOption(String name, String defaultValue) {
        return options.getOrDefault(name, defaultValue);
    }

    /**
     * @return an error naming an option, its value and what is accepted
     */
    public TransportException badOption(String name, String value, String expected) {
        return new TransportException(TransportException.Kind.INVALID_URI,
                "option " + name + "=" + value + " in '" + text + "': expected " + expected);
    }

    /** Parses {@code 123}, {@code 4k}, {@code 2m}, {@code 1g} (binary units, {@link Units#parseSize}); {@code -N} for "none" values. */
    static long parseSize(String v) {
        if (v.startsWith("-") && !v.startsWith("--")) {
            return Math.negateExact(Units.parseSize(v.substring(1))); // e.g. urgent-dscp=-1 (none)
        }
        return Units.parseSize(v);
    }

    /**
     * @param newPort the port to put in
     * @return this URI with another port (used to report the port a listener bound)
     */
    public TransportUri withPort(int newPort) {
        requireHost();
        String hostPart = host.contains(":") ? "[" + host + "]" : host;
        StringBuilder sb = new StringBuilder(scheme).append("://").append(hostPart).append(':').append(newPort);
        if (!options.isEmpty()) {
            sb.append('?');
            boolean first = true;
            for (Map.Entry<String, String> e : options.entrySet()) {
                if (!first) {
                    sb.append('&');
                }
                first = false;
                sb.append(e.getKey()).append('=').append(e.getValue());
            }
        }
        return parse(sb.toString());
    }

    @Override
    public String toString() {
        return text;
    }
}
