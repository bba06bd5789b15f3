package io.pagewire.transport.spi;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PeerTextTest {

    @Test
    void controlCharactersLineBreaksEscapeAndBidiOverridesAreEscaped() {
        String forged = "boom\r\nMigration status: completed\u001b[2J\u0007\u0085\u2028\u202e\u200b\u0000end";
        String e = PeerText.escape(forged);
        assertEquals("boom\\u000d\\u000aMigration status: completed\\u001b[2J\\u0007\\u0085\\u2028\\u202e\\u200b\\u0000end", e);
        assertTrue(e.chars().allMatch(c -> c >= 0x20 && c < 0x7f), e);
    }

    @Test
    void printableTextOfAnyScriptStaysAsItIs() {
        String text = "région 'pc.ram' 内存 ü — ok \\ backslash";
        assertEquals(text, PeerText.escape(text));
    }

    @Test
    void escapingIsIdempotent() {
        String once = PeerText.escape("a\nb\u001bc");
        assertEquals(once, PeerText.escape(once));
    }

    @Test
    void longTextIsCutAndTheCutIsSaid() {
        String e = PeerText.escape("x".repeat(10_000));
        assertTrue(e.startsWith("x".repeat(PeerText.DEFAULT_MAX_CHARS)) && e.endsWith("...(5904 more characters)"), e.substring(4000));
        assertEquals("abc...(3 more characters)", PeerText.escape("abcdef", 3));
    }

    @Test
    void invalidUtf8AndUnpairedSurrogatesAreShownNotPassedThrough() {
        String e = PeerText.escape(MemorySegment.ofArray(new byte[]{'o', 'k', (byte) 0xC3, 0x28, (byte) 0xFF}));
        assertTrue(e.startsWith("ok"), e);
        assertFalse(e.contains("\u00ff"), e);
        assertEquals("a\\ud800b", PeerText.escape("a\ud800b"));
        assertEquals("null", PeerText.escape((String) null));
        assertEquals("\u00e9", PeerText.escape(MemorySegment.ofArray("\u00e9".getBytes(StandardCharsets.UTF_8))));
    }
}
