package io.pagewire.ramtracker.blocktime;

import java.util.Arrays;

/**
 * Postcopy blocktime on the destination (seed 000): how long each vCPU was blocked on missing
 * pages, and the total downtime = the time during which <em>every</em> vCPU was blocked.
 *
 * <p>The algorithm is the reviewer's in seed 000, generalised: instead of a tree node per
 * faulting page (3.5 GB for a 256 GiB guest), keep per vCPU the number of pages it waits for
 * and when it started waiting, plus a count of blocked vCPUs and when that count last reached
 * all of them. A vCPU is blocked while it waits for at least one page, so one vCPU with several
 * outstanding faults (asynchronous page faults) and several vCPUs waiting on one page are both
 * counted right. The outstanding (page, vCPU) pairs live in a fixed open-addressing table, so
 * memory is O(vCPUs + outstanding faults) and nothing is allocated per fault.
 *
 * <pre>
 *      S1        E1           S1               E1
 * -----***********------------xxx***************-----  vCPU 0
 *             S2                E2
 * ------------****************xxx--------------------  vCPU 1
 *                         S3            E3
 * ------------------------****xxx********------------  vCPU 2
 *                             ^^^ total downtime: every vCPU blocked (S1 .. E2)
 * </pre>
 *
 * <p>Times are nanoseconds from any monotonic clock (e.g. {@link System#nanoTime()}); an event
 * stamped earlier than the previous one (two threads that read the clock before racing for
 * the lock) is taken as happening at the previous event's time.
 *
 * <p>Threading: every method is synchronized; the fault-reading thread and the placing threads
 * may call it concurrently. Each call is O(1) apart from the pairs of the arriving page.
 */
public final class BlocktimeTracker {
    private static final int EMPTY = -1;

    private final int vcpuCount;
    private final int maxOutstanding;

    // Per vCPU.
    private final int[] waiting;          // pages the vCPU waits for
    private final long[] blockedSince;    // when waiting went 0 -> 1
    private final long[] blockedNs;       // finished blocked intervals

    // All vCPUs.
    private int blockedVcpus;
    private long allBlockedSince;
    private long totalNs;
    private long lastEventNs = Long.MIN_VALUE;

    // Outstanding (page, vCPU) pairs: linear probing on the page, backward-shift deletion.
    private final long[] pages;
    private final int[] vcpus;
    private final int mask;
    private int outstanding;

    private long faults;
    private long duplicateFaults;
    private long arrivals;

    /**
     * @param vcpuCount vCPUs of the guest (at least 1)
     * @param maxOutstandingFaults most (page, vCPU) waits at once; e.g. vCPUs x 64 with KVM
     *                             asynchronous page faults
     */
    public BlocktimeTracker(int vcpuCount, int maxOutstandingFaults) {
        if (vcpuCount < 1) {
            throw new IllegalArgumentException("vCPU count must be at least 1, got " + vcpuCount);
        }
        if (maxOutstandingFaults < 1 || maxOutstandingFaults > (1 << 29)) {
            throw new IllegalArgumentException("max outstanding faults must be in [1, 2^29], got " + maxOutstandingFaults);
        }
        this.vcpuCount = vcpuCount;
        this.maxOutstanding = maxOutstandingFaults;
        this.waiting = new int[vcpuCount];
        this.blockedSince = new long[vcpuCount];
        this.blockedNs = new long[vcpuCount];
        int capacity = Integer.highestOneBit(maxOutstandingFaults * 2 - 1) << 1; // power of two, load <= 1/2
        this.pages = new long[capacity];
        this.vcpus = new int[capacity];
        Arrays.fill(vcpus, EMPTY);
        this.mask = capacity - 1;
    }

    /** @return vCPUs tracked */
    public int vcpuCount() {
        return vcpuCount;
    }

    /**
     * A vCPU started waiting for a page (a userfaultfd fault from the vCPU's thread). A repeated
     * fault by the same vCPU on the same page while it still waits is not a new wait.
     *
     * @param vcpu vCPU index
     * @param page the page faulted on (any id: region page index or guest address)
     * @param nowNs when
     * @throws IllegalStateException when more than {@code maxOutstandingFaults} waits are open
     */
    public synchronized void fault(int vcpu, long page, long nowNs) {
        checkVcpu(vcpu);
        long t = clamp(nowNs);
        faults++;
        int i = slot(page);
        while (vcpus[i] != EMPTY) {
            if (pages[i] == page && vcpus[i] == vcpu) {
                duplicateFaults++;
                return;
            }
            i = (i + 1) & mask;
        }
        if (outstanding == maxOutstanding) {
            throw new IllegalStateException("blocktime: more than " + maxOutstanding + " outstanding faults (vCPU " + vcpu + ", page " + page
                    + "); raise maxOutstandingFaults");
        }
        pages[i] = page;
        vcpus[i] = vcpu;
        outstanding++;
        if (waiting[vcpu]++ == 0) {
            blockedSince[vcpu] = t;
            if (++blockedVcpus == vcpuCount) {
                allBlockedSince = t;
            }
        }
    }

    /**
     * A page arrived (was placed): every vCPU waiting for it stops waiting for it.
     *
     * @param page the page
     * @param nowNs when
     * @return how many waits it ended
     */
    public synchronized int pageArrived(long page, long nowNs) {
        long t = clamp(nowNs);
        arrivals++;
        int ended = 0;
        int i = slot(page);
        while (vcpus[i] != EMPTY) {
            if (pages[i] == page) {
                resolve(vcpus[i], t);
                delete(i);
                ended++;
                // delete() moved a later entry into i (or emptied it): look at i again.
            } else {
                i = (i + 1) & mask;
            }
        }
        return ended;
    }

    private void resolve(int vcpu, long t) {
        if (--waiting[vcpu] == 0) {
            blockedNs[vcpu] += t - blockedSince[vcpu];
            if (blockedVcpus-- == vcpuCount) {
                totalNs += t - allBlockedSince;
            }
        }
    }

    /** Backward-shift deletion: keeps every entry reachable from its home slot without tombstones. */
    private void delete(int hole) {
        outstanding--;
        int i = hole;
        while (true) {
            i = (i + 1) & mask;
            if (vcpus[i] == EMPTY) {
                break;
            }
            int home = slot(pages[i]);
            // Move entry i into the hole unless its home lies cyclically in (hole, i].
            boolean homeBetween = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
            if (!homeBetween) {
                pages[hole] = pages[i];
                vcpus[hole] = vcpus[i];
                hole = i;
            }
        }
        vcpus[hole] = EMPTY;
    }

    /**
     * @param vcpu vCPU index
     * @param nowNs now: an interval still open counts up to here
     * @return nanoseconds the vCPU was blocked
     */
    public synchronized long vcpuBlockedNs(int vcpu, long nowNs) {
        checkVcpu(vcpu);
        long n = blockedNs[vcpu];
        if (waiting[vcpu] > 0) {
            n += Math.max(0, nowNs - blockedSince[vcpu]);
        }
        return n;
    }

    /**
     * @param nowNs now: an interval still open counts up to here
     * @return nanoseconds during which every vCPU was blocked (the postcopy downtime)
     */
    public synchronized long totalBlockedNs(long nowNs) {
        return blockedVcpus == vcpuCount ? totalNs + Math.max(0, nowNs - allBlockedSince) : totalNs;
    }

    /**
     * @param vcpu vCPU index
     * @return whether it waits for a page now
     */
    public synchronized boolean isBlocked(int vcpu) {
        checkVcpu(vcpu);
        return waiting[vcpu] > 0;
    }

    /** @return (page, vCPU) waits open now */
    public synchronized int outstandingFaults() {
        return outstanding;
    }

    /**
     * @param nowNs now
     * @return every figure at once, consistent with each other
     */
    public synchronized Snapshot snapshot(long nowNs) {
        long[] per = new long[vcpuCount];
        for (int v = 0; v < vcpuCount; v++) {
            per[v] = vcpuBlockedNs(v, nowNs);
        }
        return new Snapshot(totalBlockedNs(nowNs), per, faults, duplicateFaults, arrivals, outstanding);
    }

    /**
     * Blocktime figures (QEMU's {@code postcopy-blocktime} and {@code postcopy-vcpu-blocktime}).
     *
     * @param totalBlockedNs time every vCPU was blocked
     * @param vcpuBlockedNs per vCPU blocked time
     * @param faults faults reported
     * @param duplicateFaults repeated faults ignored
     * @param arrivals pages placed
     * @param outstandingFaults waits open at the snapshot
     */
    public record Snapshot(long totalBlockedNs, long[] vcpuBlockedNs, long faults, long duplicateFaults, long arrivals, int outstandingFaults) {
        @Override
        public String toString() {
            return "blocktime total " + totalBlockedNs + " ns, per vCPU " + Arrays.toString(vcpuBlockedNs) + " ns, faults " + faults
                    + " (duplicates " + duplicateFaults + "), arrivals " + arrivals + ", outstanding " + outstandingFaults;
        }
    }

    private int slot(long page) {
        long h = page * 0x9E3779B97F4A7C15L; // Fibonacci hashing: page ids are often sequential
        return (int) (h >>> 32) & mask;
    }

    private long clamp(long nowNs) {
        if (nowNs < lastEventNs) {
            return lastEventNs;
        }
        lastEventNs = nowNs;
        return nowNs;
    }

    private void checkVcpu(int vcpu) {
        if (vcpu < 0 || vcpu >= vcpuCount) {
            throw new IndexOutOfBoundsException("vCPU " + vcpu + " outside [0, " + vcpuCount + ")");
        }
    }
}
