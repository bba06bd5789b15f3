package io.pagewire.transport.spi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * Text that came from a peer (an ERROR's reason, a verdict, a region name, any CONTROL text), made
 * safe to print on a terminal or to put into an exception message: nothing a peer sends can move
 * the cursor, start a new line, clear the screen or pass for this side's own output.
 *
 * <p>Every character that is not printable is written as {@code \\uXXXX}: C0 and C1 control
 * characters (NUL, CR, LF, TAB, ESC, DEL, CSI ...), line and paragraph separators, format
 * characters (bidirectional overrides and isolates, zero-width characters), unpaired surrogates,
 * private-use and unassigned code points. The text is cut at a length bound and the cut is said.
 * Escaping is idempotent (a backslash is kept as it is), so text escaped where it was received may
 * be escaped again where it is printed. Terminal output only: JSON output escapes through its own
 * encoder.
 */
public final class PeerText {
    /** Default bound on the characters kept: an ERROR's wire limit. */
    public static final int DEFAULT_MAX_CHARS = 4096;

    private PeerText() {
    }

    /** @return {@code text} escaped, cut to {@link #DEFAULT_MAX_CHARS} characters; "null" for null */
    public static String escape(String text) {
        return escape(text, DEFAULT_MAX_CHARS);
    }

    /**
     * @param maxChars most characters of {@code text} kept (before escaping); the rest is replaced by a note
     * @return {@code text} escaped; "null" for null
     */
    public static String escape(String text, int maxChars) {
        if (text == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder(Math.min(text.length(), maxChars) + 16);
        int kept = 0;
        int i = 0;
        while (i < text.length() && kept < maxChars) {
            int c = text.codePointAt(i);
            int n = Character.charCount(c);
            if (printable(c)) {
                sb.appendCodePoint(c);
            } else if (c > 0xffff) {
                sb.append(String.format("\\u%04x\\u%04x", (int) Character.highSurrogate(c), (int) Character.lowSurrogate(c)));
            } else {
                sb.append(String.format("\\u%04x", c));
            }
            kept += n;
            i += n;
        }
        if (i < text.length()) {
            sb.append("...(").append(text.length() - i).append(" more characters)");
        }
        return sb.toString();
    }

    /** @return the UTF-8 bytes of {@code utf8} as text (invalid sequences as U+FFFD), escaped */
    public static String escape(MemorySegment utf8) {
        return escape(new String(utf8.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
    }

    /** @return true for a code point that prints as itself and moves nothing but the cursor by its width */
    static boolean printable(int c) {
        if (c == ' ') {
            return true;
        }
        return switch (Character.getType(c)) {
            case Character.CONTROL, Character.FORMAT, Character.SURROGATE, Character.PRIVATE_USE, Character.UNASSIGNED,
                 Character.LINE_SEPARATOR, Character.PARAGRAPH_SEPARATOR, Character.SPACE_SEPARATOR -> false;
            default -> true;
        };
    }
}
