package io.pagewire.agent;

import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * Every JSON pagewire writes or reads goes through this one Jackson mapper: text from a peer is
 * parsed, never pasted, and strings are escaped by the library (control characters, quotes).
 */
public final class Json {
    /**
     * The schema of the statistics object ({@code "schema"} field of every statistics document and
     * JSON line; docs/migration.md documents the fields). The number after the slash goes up when a
     * field changes meaning or goes away; new fields may appear without it changing.
     */
    public static final String STATS_SCHEMA = "pagewire.migration-stats/1";

    private static final JsonMapper MAPPER = JsonMapper.builder().build();

    private Json() {
    }

    /** @return a new empty JSON object */
    public static ObjectNode object() {
        return MAPPER.createObjectNode();
    }

    /** @return {@code node} as compact JSON text on one line */
    public static String write(JsonNode node) {
        return MAPPER.writeValueAsString(node);
    }

    /**
     * Parses JSON text that must be one object (e.g. a peer's statistics).
     *
     * @param text the text
     * @param what what it is, for the error
     * @return the object
     * @throws IllegalArgumentException naming {@code what} when the text is not one JSON object
     */
    public static ObjectNode parseObject(String text, String what) {
        JsonNode n;
        try {
            n = MAPPER.readTree(text);
        } catch (JacksonException e) {
            throw new IllegalArgumentException(what + " is not valid JSON: " + e.getOriginalMessage(), e);
        }
        if (n == null || !n.isObject()) {
            throw new IllegalArgumentException(what + " is not a JSON object");
        }
        return (ObjectNode) n;
    }

    /** @return {@code v} rounded to {@code digits} decimals, for figures people read */
    public static double round(double v, int digits) {
        double f = Math.pow(10, digits);
        return Math.round(v * f) / f;
    }
}
