package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import tools.jackson.databind.node.ObjectNode;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** JSON from a peer is parsed, never pasted; JSON we write is built as a tree. */
class JsonTest {
    @Test
    void aPeersObjectIsParsedAndWrittenAgain() {
        ObjectNode o = Json.parseObject("{\"postcopy-requests\":3,\"blocktime-ms\":1.5}", 1024, "stats");
        assertEquals(3, o.get("postcopy-requests").asInt());
        assertEquals("{\"postcopy-requests\":3,\"blocktime-ms\":1.5}", Json.write(o));
    }

    @Test
    void injectionsAreRefusedOrDefused() {
        // Closing the object early to add fields of our own output: trailing tokens are an error.
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Json.parseObject("{\"a\":1},\"status\":\"completed\",\"x\":{\"b\":2}", 1024, "the destination's postcopy-stats"));
        assertTrue(e.getMessage().startsWith("the destination's postcopy-stats is not valid JSON"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Json.parseObject("[1,2]", 1024, "stats"));
        assertThrows(IllegalArgumentException.class, () -> Json.parseObject("", 1024, "stats"));
        assertThrows(IllegalArgumentException.class, () -> Json.parseObject("{\"a\":\"" + "x".repeat(2000) + "\"}", 1024, "stats"));
        // Terminal control sequences inside a string value come out escaped, never raw.
        ObjectNode o = Json.parseObject("{\"note\":\"\\u001b]0;pwned\\u0007\\u001b[2J\\n\"}", 1024, "stats");
        String written = Json.write(o);
        assertFalse(written.chars().anyMatch(c -> c < 0x20), written);
        assertTrue(written.contains("\\u001B") || written.contains("\\u001b"), written);
    }

    @Test
    void statisticsAreATreeWithQemusNames() {
        MigrationStats s = new MigrationStats();
        ObjectNode o = s.toJson();
        for (String field : new String[]{"status", "total-time", "setup-time", "downtime", "expected-downtime", "ram"}) {
            assertTrue(o.has(field), field + " in " + o);
        }
        assertTrue(o.get("ram").has("transferred") && o.get("ram").get("rounds").isArray(), o.toString());
        assertEquals(Json.write(o), Json.write(Json.parseObject(Json.write(o), 1 << 20, "round trip")));
    }
}
