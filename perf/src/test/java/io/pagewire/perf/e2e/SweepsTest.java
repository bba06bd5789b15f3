package io.pagewire.perf.e2e;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SweepsTest {

    @Test
    void everyCombinationInOrder() {
        assertEquals(List.of("tcp://h:1?channels=1&batch-bytes=64k", "tcp://h:1?channels=1&batch-bytes=1m",
                        "tcp://h:1?channels=4&batch-bytes=64k", "tcp://h:1?channels=4&batch-bytes=1m"),
                Sweeps.expand(List.of("tcp://h:1"), List.of("channels=1,4", "batch-bytes=64k,1m")));
    }

    @Test
    void replacesAnOptionTheUriAlreadyHasAndKeepsTheRest() {
        assertEquals(List.of("tcp://h:1?data-digest=false&channels=8"),
                Sweeps.expand(List.of("tcp://h:1?channels=2&data-digest=false"), List.of("channels=8")));
        assertEquals("aeron:udp?endpoint=127.0.0.1:0|data-digest=false",
                Sweeps.with("aeron:udp?endpoint=127.0.0.1:0|data-digest=true", "data-digest", "false"));
    }

    @Test
    void malformedSweepsAndUnknownOptionsAreRefusedByName() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Sweeps.expand(List.of("tcp://h:1"), List.of("channels")));
        assertTrue(e.getMessage().contains("OPTION=V1,V2"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Sweeps.expand(List.of("tcp://h:1"), List.of("channels=1,,2")));
        assertTrue(e.getMessage().contains("empty value"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Sweeps.expand(List.of("tcp://h:1"), List.of("chanels=1,2")));
        assertTrue(e.getMessage().contains("chanels"), e.getMessage());
    }
}
