package io.pagewire.transport.spi;

import java.time.Duration;
import java.util.Locale;

/**
 * The one parser for sizes and durations used by URIs, the command line and the benchmarks.
 *
 * <p>Sizes are binary: {@code 4096}, {@code 4k}, {@code 512M}, {@code 1G}, {@code 2T}, optionally
 * followed by {@code B} or {@code iB} ({@code 1GiB}, {@code 64MB}: both 2^n). Durations carry a
 * unit: {@code 300ms}, {@code 2s}, {@code 1.5s}, {@code 500us}, {@code 10min}, {@code 1h}; a bare
 * number is read in the unit the option names (its documented default unit), so a size suffix
 * such as {@code 1k} is an error, never a number of milliseconds.
 */
public final class Units {
    private Units() {
    }

    /**
     * @param text a size such as {@code 512M}
     * @return the size in bytes (not negative)
     * @throws IllegalArgumentException naming the text and what is accepted
     */
    public static long parseSize(String text) {
        String s = text.strip().toLowerCase(Locale.ROOT);
        if (s.endsWith("ib")) {
            s = s.substring(0, s.length() - 2);
        } else if (s.endsWith("b")) {
            s = s.substring(0, s.length() - 1); // 64MB = 64M; 64b = 64 bytes
        }
        int shift = switch (s.isEmpty() ? '?' : s.charAt(s.length() - 1)) {
            case 'k' -> 10;
            case 'm' -> 20;
            case 'g' -> 30;
            case 't' -> 40;
            default -> 0;
        };
        String digits = shift == 0 ? s : s.substring(0, s.length() - 1);
        if (digits.isEmpty() || digits.length() > 19 || !digits.chars().allMatch(c -> c >= '0' && c <= '9')) {
            throw new IllegalArgumentException("'" + text + "' is not a size; write e.g. 4096, 64k, 512M, 1G (binary units)");
        }
        try {
            return Math.multiplyExact(Long.parseLong(digits), 1L << shift);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("'" + text + "' is too large a size (at most " + Long.MAX_VALUE + " bytes)");
        }
    }

    /**
     * @param text a duration such as {@code 300ms}, {@code 1.5s}; a bare number is in {@code bareUnit}
     * @param bareUnit the unit of a number written without one: {@code "ms"} or {@code "s"}, as the option documents
     * @return the duration (not negative)
     * @throws IllegalArgumentException naming the text and what is accepted
     */
    public static Duration parseDuration(String text, String bareUnit) {
        String s = text.strip().toLowerCase(Locale.ROOT);
        int i = 0;
        while (i < s.length() && (Character.isDigit(s.charAt(i)) || s.charAt(i) == '.')) {
            i++;
        }
        String number = s.substring(0, i);
        String unit = s.substring(i).strip();
        if (unit.isEmpty()) {
            unit = bareUnit;
        }
        long nanosPerUnit = switch (unit) {
            case "ns" -> 1L;
            case "us", "µs" -> 1_000L;
            case "ms" -> 1_000_000L;
            case "s" -> 1_000_000_000L;
            case "min" -> 60_000_000_000L;
            case "h" -> 3_600_000_000_000L;
            default -> -1L;
        };
        if (nanosPerUnit < 0 || number.isEmpty() || number.indexOf('.') != number.lastIndexOf('.') || number.equals(".")) {
            throw new IllegalArgumentException("'" + text + "' is not a duration; write e.g. 300ms, 2s, 1.5s, 500us, 10min"
                    + " (a bare number is in " + bareUnit + ")");
        }
        java.math.BigDecimal nanos = new java.math.BigDecimal(number).multiply(java.math.BigDecimal.valueOf(nanosPerUnit));
        if (nanos.compareTo(java.math.BigDecimal.valueOf(Long.MAX_VALUE)) > 0) {
            throw new IllegalArgumentException("'" + text + "' is too long a duration");
        }
        return Duration.ofNanos(nanos.longValue());
    }

    /**
     * @param bytes a size
     * @return it for people: {@code 4 GiB}, {@code 1.5 MiB}, {@code 512 B}
     */
    public static String human(long bytes) {
        if (bytes >= 1L << 30 && bytes % (1L << 30) == 0) {
            return (bytes >> 30) + " GiB";
        }
        if (bytes >= 1L << 30) {
            return String.format(Locale.ROOT, "%.1f GiB", bytes / (double) (1L << 30));
        }
        if (bytes >= 1L << 20) {
            return String.format(Locale.ROOT, "%.1f MiB", bytes / (double) (1L << 20));
        }
        if (bytes >= 1L << 10) {
            return String.format(Locale.ROOT, "%.1f KiB", bytes / (double) (1L << 10));
        }
        return bytes + " B";
    }
}
