package io.pagewire.agent.replica;

import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ReplicationConfigTest {
    @Test
    void badValuesAreNamedWithTheirBound() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ReplicationConfig().rateLimitBytesPerSec(-1).conclude())
                .getMessage().contains("background rate cap -1 bytes/s is negative"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ReplicationConfig().intervalNs(TimeUnit.HOURS.toNanos(2)).conclude())
                .getMessage().contains("7200000 ms outside 0..3600000 ms"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ReplicationConfig().maxInitialPasses(101).conclude())
                .getMessage().contains("initial dirty passes 101 outside 0..100"));
    }

    @Test
    void backgroundPassesDefaultToAQuarterOfTheInterval() {
        assertEquals(TimeUnit.MILLISECONDS.toNanos(25), new ReplicationConfig().intervalNs(TimeUnit.MILLISECONDS.toNanos(100)).passIntervalNs());
        assertEquals(TimeUnit.MILLISECONDS.toNanos(5), new ReplicationConfig().intervalNs(TimeUnit.MILLISECONDS.toNanos(8)).passIntervalNs());
        assertEquals(TimeUnit.MILLISECONDS.toNanos(50), new ReplicationConfig().intervalNs(0).passIntervalNs());
    }
}
