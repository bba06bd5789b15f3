package io.pagewire.agent.replica;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The background rate cap's decisions, with the time supplied: no clock, no sleeping. */
class RateLimiterTest {
    private static final long MS = 1_000_000;

    @Test
    void waitsUntilTheBytesSentAreDueAtTheRate() {
        RateLimiter l = new RateLimiter(100_000_000); // 100 MB/s: 1 MB is due after 10 ms
        l.start(0);
        assertEquals(10 * MS, l.sent(1_000_000, 0), "1 MB at once: wait until it is due");
        assertEquals(0, l.sent(0, 10 * MS), "on schedule: no wait");
        assertEquals(10 * MS, l.sent(1_000_000, 10 * MS));
        assertEquals(5 * MS, l.sent(1_000_000, 25 * MS), "3 MB are due at 30 ms");
        assertEquals(3_000_000, l.bytes());
        assertEquals(25 * MS, l.waitedNs());
    }

    @Test
    void aSenderBehindScheduleSendsOnAndANewPassStartsANewAccount() {
        RateLimiter l = new RateLimiter(100_000_000);
        l.start(0);
        assertEquals(0, l.sent(1_000_000, 50 * MS), "1 MB due at 10 ms, now 50 ms: behind, send on");
        assertEquals(0, l.sent(3_000_000, 50 * MS), "4 MB due at 40 ms: still behind (catch-up within the pass)");
        assertEquals(10 * MS, l.sent(1_000_000, 40 * MS), "5 MB due at 50 ms");
        l.start(1000 * MS); // the next pass: the idle time before it gives no credit
        assertEquals(0, l.bytes());
        assertEquals(20 * MS, l.sent(2_000_000, 1000 * MS));
    }

    @Test
    void shortWaitsAreNotTakenAndNoCapNeverWaits() {
        RateLimiter l = new RateLimiter(1_000_000_000); // 1 GB/s: 4 KiB is due after 4096 ns
        l.start(0);
        assertEquals(0, l.sent(4096, 0), "a wait under " + RateLimiter.MIN_WAIT_NS + " ns is not taken");
        assertEquals(0, l.sent(40_000, 0), "44 us: still not");
        assertEquals(54_096, l.sent(10_000, 0), "54 us: taken");
        RateLimiter none = new RateLimiter(0);
        none.start(0);
        assertEquals(0, none.sent(Long.MAX_VALUE / 2, 0));
        assertEquals(0, none.waitedNs());
        assertThrows(IllegalArgumentException.class, () -> new RateLimiter(-1));
    }

    @Test
    void aTerabyteAtAByteASecondSaturatesInsteadOfOverflowing() {
        RateLimiter l = new RateLimiter(1);
        l.start(5 * MS);
        assertEquals(Long.MAX_VALUE, l.sent(1L << 40, 5 * MS));
        assertEquals(Long.MAX_VALUE, l.sent(1L << 40, 5 * MS));
        assertEquals(Long.MAX_VALUE, l.waitedNs());
    }
}
