package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The verdict wait's rule, on an explicit clock: it lasts as long as the peer's figure grows. */
@Timeout(value = 10, unit = TimeUnit.SECONDS)
class ProgressDeadlineTest {

    @Test
    void expiresOnlyAfterTheStallTimeWithoutGrowth() {
        ProgressDeadline d = new ProgressDeadline(10, 1000);
        assertEquals(10, d.remainingNs(1000));
        assertTrue(d.progress(5, 1008));
        assertEquals(10, d.remainingNs(1008), "growth extends the wait");
        assertFalse(d.progress(5, 1015), "the same figure again is no progress");
        assertFalse(d.progress(3, 1016), "nor is a smaller one");
        assertEquals(1, d.remainingNs(1017));
        assertEquals(0, d.remainingNs(1018));
        assertEquals(5, d.value());
    }

    @Test
    void aLongWaitWithSteadyProgressNeverExpires() {
        ProgressDeadline d = new ProgressDeadline(10, 0);
        for (long t = 0, done = 0; t < 1_000_000; t += 9, done++) {
            d.progress(done, t);
            assertTrue(d.remainingNs(t) > 0, "at " + t);
        }
    }

    @Test
    void restartStartsTheClockAgain() {
        ProgressDeadline d = new ProgressDeadline(10, 0);
        assertTrue(d.remainingNs(50) <= 0);
        d.restart(50);
        assertEquals(10, d.remainingNs(50));
        assertThrows(IllegalArgumentException.class, () -> new ProgressDeadline(0, 0));
    }

    @Test
    void progressMessagesAreCheckedBeforeTheyCount() {
        assertEquals(5, Protocol.progressDone("5 10"));
        for (String bad : new String[]{"", "x 10", "11 10", "-1 10", "5", "5 10 15", "5 \u0007"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Protocol.progressDone(bad), bad);
            assertFalse(e.getMessage().chars().anyMatch(c -> c < 0x20), "the peer's text is escaped: " + e.getMessage());
        }
    }
}
