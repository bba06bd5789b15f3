package io.pagewire.transport.spi;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class UnitsTest {

    @ParameterizedTest
    @CsvSource({"4096,4096", "0,0", "4k,4096", "4K,4096", "512M,536870912", "512MiB,536870912", "512MB,536870912", "1G,1073741824",
            "1g,1073741824", "2T,2199023255552", "64b,64", " 8m ,8388608"})
    void sizes(String text, long bytes) {
        assertEquals(bytes, Units.parseSize(text));
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "b", "k", "lots", "1.5G", "-1", "1x", "1kk", "99999999999999999999", "9223372036854775807k", "1 G"})
    void badSizesNameTheText(String text) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Units.parseSize(text));
        assertTrue(e.getMessage().contains("'" + text + "'"), e.getMessage());
    }

    @ParameterizedTest
    @CsvSource({"300ms,ms,300000000", "300,ms,300000000", "300,s,300000000000", "2s,ms,2000000000", "1.5s,ms,1500000000",
            "500us,s,500000", "10min,s,600000000000", "1h,s,3600000000000", "0,ms,0", "250 ms,s,250000000", "7ns,s,7"})
    void durations(String text, String bareUnit, long nanos) {
        assertEquals(Duration.ofNanos(nanos), Units.parseDuration(text, bareUnit));
    }

    @ParameterizedTest
    @ValueSource(strings = {"1k", "1m", "5 parsecs", "", "ms", "1.2.3s", ".", "-5ms", "1e3ms", "99999999999h"})
    void sizesAreNotDurations(String text) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Units.parseDuration(text, "ms"));
        assertTrue(e.getMessage().contains("'" + text + "'"), e.getMessage());
    }

    @Test
    void human() {
        assertEquals("4 GiB", Units.human(4L << 30));
        assertEquals("1.5 GiB", Units.human(3L << 29));
        assertEquals("256.0 MiB", Units.human(256L << 20));
        assertEquals("2.0 KiB", Units.human(2048));
        assertEquals("17 B", Units.human(17));
    }
}
