package io.pagewire.agent;

import tools.jackson.core.JacksonException;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * The JSON the agent writes and the JSON it reads from a peer, through one Jackson mapper: objects are
 * built as trees and serialized (never concatenated from strings), and text from a peer is parsed before
 * any of it reaches output, so a hostile peer cannot inject fields, break the document, or smuggle
 * terminal control sequences (Jackson escapes control characters in strings).
 */
public final class Json {
    /**
     * The schema of the statistics object ({@code "schema"} field of every statistics document and
     * JSON line; docs/migration.md documents the fields). The number after the slash goes up when a
     * field changes meaning or goes away; new fields may appear without it changing.
     */
    public static final String STATS_SCHEMA = "pagewire.migration-stats/1";

    // Trailing tokens are an error: "{...},\"status\":\"completed\"" from a peer must not parse as its first object.
    private static final JsonMapper MAPPER = JsonMapper.builder().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS).build();

    private Json() {
    }

    /** @return a new, empty object */
    public static ObjectNode object() {
        return MAPPER.createObjectNode();
    }

    /** @return {@code node} as compact JSON text */
    public static String write(JsonNode node) {
        return MAPPER.writeValueAsString(node);
    }

    /**
     * Parses JSON text that came from a peer.
     *
     * @param what names it in the error
     * @return the object it holds
     * @throws IllegalArgumentException naming {@code what} when it is not exactly one JSON object of at most
     *         {@code maxChars} characters (the message does not quote the peer's text)
     */
    public static ObjectNode parseObject(String text, int maxChars, String what) {
        if (text.length() > maxChars) {
            throw new IllegalArgumentException(what + " of " + text.length() + " characters exceeds " + maxChars);
        }
        JsonNode node;
        try {
            node = MAPPER.readTree(text);
        } catch (JacksonException e) {
            throw new IllegalArgumentException(what + " is not valid JSON: " + e.getOriginalMessage(), e);
        }
        if (!(node instanceof ObjectNode o)) {
            throw new IllegalArgumentException(what + " is not a JSON object but " + (node == null ? "empty" : node.getNodeType()));
        }
        return o;
    }

    /** As {@link #parseObject(String, int, String)} for text of our own (files we wrote, tools' output): no length bound. */
    public static ObjectNode parseObject(String text, String what) {
        return parseObject(text, Integer.MAX_VALUE, what);
    }

    /** @return {@code v} rounded to {@code places} decimals (what the text formats showed), for JSON numbers */
    public static double round(double v, int places) {
        double scale = Math.pow(10, places);
        return Math.round(v * scale) / scale;
    }
}
