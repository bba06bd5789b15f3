package io.pagewire.perf.e2e;

import io.pagewire.transport.spi.TransportUri;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** {@code --sweep OPTION=V1,V2,...}: every URI with every combination of the swept option values. */
final class Sweeps {
    private Sweeps() {
    }

    /**
     * @param uris the URIs to sweep
     * @param sweeps each {@code option=v1,v2,...}
     * @return the URIs with the options set, first sweep outermost, in the order given
     * @throws IllegalArgumentException for a malformed sweep or a value the transport refuses
     */
    static List<String> expand(List<String> uris, List<String> sweeps) {
        Map<String, List<String>> axes = new LinkedHashMap<>();
        for (String s : sweeps) {
            int eq = s.indexOf('=');
            if (eq <= 0 || eq == s.length() - 1) {
                throw new IllegalArgumentException("--sweep " + s + ": write OPTION=V1,V2,... e.g. channels=1,2,4,8");
            }
            List<String> values = List.of(s.substring(eq + 1).split(","));
            if (values.stream().anyMatch(String::isBlank)) {
                throw new IllegalArgumentException("--sweep " + s + ": an empty value");
            }
            if (axes.put(s.substring(0, eq), values) != null) {
                throw new IllegalArgumentException("--sweep " + s.substring(0, eq) + " given twice");
            }
        }
        List<String> out = new ArrayList<>(uris);
        for (Map.Entry<String, List<String>> axis : axes.entrySet()) {
            List<String> next = new ArrayList<>();
            for (String uri : out) {
                for (String v : axis.getValue()) {
                    next.add(with(uri, axis.getKey(), v));
                }
            }
            out = next;
        }
        for (String uri : out) {
            // Unknown options and bad values fail here, before anything is measured.
            try {
                io.pagewire.transport.spi.Transports.provider(TransportUri.parse(uri));
            } catch (io.pagewire.transport.spi.TransportException e) {
                throw new IllegalArgumentException("--sweep gives " + uri + ": " + e.getMessage(), e);
            }
        }
        return out;
    }

    /** @return {@code uri} with {@code option=value} set (replacing it when present) */
    static String with(String uri, String option, String value) {
        TransportUri u = TransportUri.parse(uri);
        boolean aeron = u.scheme().equals("aeron");
        char sep = aeron ? '|' : '&';
        String base = uri;
        String query = "";
        int q = uri.indexOf('?');
        if (q >= 0) {
            base = uri.substring(0, q);
            query = uri.substring(q + 1);
        }
        List<String> kept = new ArrayList<>();
        for (String kv : query.isEmpty() ? new String[0] : query.split(aeron ? "\\|" : "&")) {
            if (!kv.startsWith(option + "=")) {
                kept.add(kv);
            }
        }
        kept.add(option + "=" + value);
        return base + "?" + String.join(String.valueOf(sep), kept);
    }
}
