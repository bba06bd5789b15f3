package io.pagewire.ramtracker.blocktime;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BlocktimeTrackerTest {

    /**
     * Seed 000's picture, column by column: vCPU 0 blocked [5, 16) and [28, 46), vCPU 1 [12, 31),
     * vCPU 2 [24, 39). Events S1, S2, E1, S3, S1, E2, E3, E1; all three blocked only in [28, 31).
     */
    @Test
    void theSeedsThreeCpuTimeline() {
        BlocktimeTracker t = new BlocktimeTracker(3, 16);
        t.fault(0, 1000, 5);
        t.fault(1, 2000, 12);
        assertEquals(1, t.pageArrived(1000, 16));
        t.fault(2, 3000, 24);
        t.fault(0, 4000, 28);
        assertEquals(0, t.totalBlockedNs(28));
        assertEquals(2, t.totalBlockedNs(30), "all blocked since 28: the open interval counts up to now");
        assertEquals(1, t.pageArrived(2000, 31));
        assertEquals(1, t.pageArrived(3000, 39));
        assertEquals(1, t.pageArrived(4000, 46));
        assertEquals(3, t.totalBlockedNs(100));
        assertEquals(11 + 18, t.vcpuBlockedNs(0, 100));
        assertEquals(19, t.vcpuBlockedNs(1, 100));
        assertEquals(15, t.vcpuBlockedNs(2, 100));
        BlocktimeTracker.Snapshot s = t.snapshot(100);
        assertEquals(3, s.totalBlockedNs());
        assertArrayEquals(new long[] {29, 19, 15}, s.vcpuBlockedNs());
        assertEquals(4, s.faults());
        assertEquals(4, s.arrivals());
        assertEquals(0, s.outstandingFaults());
    }

    @Test
    void severalVcpusOnOnePageAndSeveralPagesOnOneVcpu() {
        BlocktimeTracker t = new BlocktimeTracker(2, 8);
        t.fault(0, 7, 10);
        t.fault(1, 7, 12);      // both wait on page 7
        t.fault(0, 8, 13);      // vCPU 0 also waits on page 8 (asynchronous page fault)
        t.fault(0, 8, 14);      // a repeated fault is the same wait
        assertEquals(3, t.outstandingFaults());
        assertEquals(2, t.pageArrived(7, 20));
        assertTrue(t.isBlocked(0), "vCPU 0 still waits for page 8");
        assertFalse(t.isBlocked(1));
        assertEquals(8, t.totalBlockedNs(100));
        assertEquals(1, t.pageArrived(8, 25));
        assertEquals(15, t.vcpuBlockedNs(0, 100));
        assertEquals(8, t.vcpuBlockedNs(1, 100));
        assertEquals(0, t.pageArrived(9, 26), "a page nobody waits for");
        assertEquals(1, t.snapshot(30).duplicateFaults());
    }

    @Test
    void outstandingFaultsAreBoundedAndTimeNeverRunsBackwards() {
        BlocktimeTracker t = new BlocktimeTracker(1, 2);
        t.fault(0, 1, 100);
        t.fault(0, 2, 100);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> t.fault(0, 3, 101));
        assertTrue(e.getMessage().contains("more than 2 outstanding faults"), e.getMessage());
        t.pageArrived(1, 90);   // stamped before the last event: taken as happening at 100
        t.pageArrived(2, 150);
        assertEquals(50, t.vcpuBlockedNs(0, 200));
        assertEquals(50, t.totalBlockedNs(200));
        assertThrows(IndexOutOfBoundsException.class, () -> t.fault(1, 1, 300));
        assertThrows(IllegalArgumentException.class, () -> new BlocktimeTracker(0, 1));
    }

    record Event(boolean fault, int vcpu, long page, long time) {
    }

    /**
     * Brute force: after every event, recompute from the full set of open (page, vCPU) waits
     * which vCPUs are blocked, and add the time to the next event to each blocked vCPU and, when
     * all are blocked, to the total.
     */
    static long[] reference(int vcpus, List<Event> events, long end) {
        Set<List<Long>> open = new HashSet<>();
        long[] per = new long[vcpus + 1];
        for (int i = 0; i < events.size(); i++) {
            Event e = events.get(i);
            if (e.fault) {
                open.add(List.of(e.page, (long) e.vcpu));
            } else {
                open.removeIf(w -> w.get(0) == e.page);
            }
            long next = i + 1 < events.size() ? events.get(i + 1).time : end;
            long dt = next - e.time;
            int blocked = 0;
            for (int v = 0; v < vcpus; v++) {
                final long vv = v;
                if (open.stream().anyMatch(w -> w.get(1) == vv)) {
                    per[v] += dt;
                    blocked++;
                }
            }
            if (blocked == vcpus) {
                per[vcpus] += dt;
            }
        }
        return per;
    }

    @Test
    void randomTimelinesMatchABruteForceReference() {
        long seed = 0x5eed_b10cL;
        Random rnd = new Random(seed);
        for (int iter = 0; iter < 2000; iter++) {
            int vcpus = 1 + rnd.nextInt(5);
            int pages = 1 + rnd.nextInt(6);               // few pages: vCPUs often share one
            List<Event> events = new ArrayList<>();
            long time = 0;
            int n = rnd.nextInt(60);
            for (int k = 0; k < n; k++) {
                time += rnd.nextInt(4);                      // equal times happen
                boolean fault = rnd.nextInt(3) != 0;
                events.add(new Event(fault, rnd.nextInt(vcpus), rnd.nextInt(pages), time));
            }
            long end = time + rnd.nextInt(10);
            BlocktimeTracker t = new BlocktimeTracker(vcpus, vcpus * pages);
            for (Event e : events) {
                if (e.fault) {
                    t.fault(e.vcpu, e.page, e.time);
                } else {
                    t.pageArrived(e.page, e.time);
                }
            }
            long[] expected = reference(vcpus, events, end);
            String ctx = "seed " + seed + " iteration " + iter + ": " + events;
            for (int v = 0; v < vcpus; v++) {
                assertEquals(expected[v], t.vcpuBlockedNs(v, end), ctx + " vCPU " + v);
            }
            assertEquals(expected[vcpus], t.totalBlockedNs(end), ctx + " total");
        }
    }

    @Test
    void faultsAndArrivalsFromSeveralThreads() throws Exception {
        int vcpus = 4;
        BlocktimeTracker t = new BlocktimeTracker(vcpus, vcpus);
        // Each vCPU thread faults on its own pages and the "placer" resolves them: at the end no
        // wait is open and every vCPU's blocked time is bounded by the elapsed time.
        long start = System.nanoTime();
        try (ExecutorService pool = Executors.newFixedThreadPool(vcpus)) {
            List<Future<?>> fs = new ArrayList<>();
            for (int v = 0; v < vcpus; v++) {
                int vcpu = v;
                fs.add(pool.submit(() -> {
                    for (int k = 0; k < 20_000; k++) {
                        long page = (long) vcpu << 32 | k;
                        t.fault(vcpu, page, System.nanoTime());
                        assertEquals(1, t.pageArrived(page, System.nanoTime()));
                    }
                }));
            }
            for (Future<?> f : fs) {
                f.get(30, TimeUnit.SECONDS);
            }
        }
        long elapsed = System.nanoTime() - start;
        BlocktimeTracker.Snapshot s = t.snapshot(System.nanoTime());
        assertEquals(0, s.outstandingFaults());
        assertEquals(4 * 20_000, s.faults());
        for (long ns : s.vcpuBlockedNs()) {
            assertTrue(ns >= 0 && ns <= elapsed, s.toString());
        }
        assertTrue(s.totalBlockedNs() <= elapsed);
    }
}
