package io.pagewire.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Per-thread scheduling hints on Linux, for the calling thread:
 * <ul>
 * <li>the nice value, so background threads (bulk senders and receivers, a bulk media driver) yield the CPU to
 *     urgent ones on a busy host: Java thread priorities do nothing on Linux, the kernel's per-thread nice value
 *     does, and any thread may raise its own without privileges;</li>
 * <li>the timer slack, so a short park of an urgent thread ends when asked rather than up to 50 us later;</li>
 * <li>a short scheduler slice (Linux 6.12+ EEVDF), so an urgent thread that wakes preempts a CPU-bound page
 *     stream promptly instead of waiting out the default 3 ms slice.</li>
 * </ul>
 * These are tuning aids, never correctness requirements: each returns null when applied, else why not (for a
 * log line), and does nothing when native access is not enabled ({@link #unavailabilityCause()}).
 */
public final class ThreadTuning {
    private static final int SCHED_ATTR_SIZE = 56;
    private static final String CAUSE = probe();

    private ThreadTuning() {
    }

    private static String probe() {
        Module m = ThreadTuning.class.getModule();
        if (!m.isNativeAccessEnabled()) {
            String name = m.isNamed() ? m.getName() : "ALL-UNNAMED";
            return "native access is not enabled for " + name + " (add --enable-native-access=" + name + ")";
        }
        if (!System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).contains("linux")) {
            return "per-thread scheduling hints are a Linux feature";
        }
        return null;
    }

    /** @return null when the hints can be applied here, else why not */
    public static String unavailabilityCause() {
        return CAUSE;
    }

    /** @return the calling thread's kernel thread id */
    public static int tid() {
        try {
            return (int) Libc.GETTID.invokeExact(Libc.capture());
        } catch (Throwable t) {
            throw Libc.unexpected("gettid", t);
        }
    }

    /**
     * Sets the calling thread's nice value (only ever raises it: lowering needs CAP_SYS_NICE).
     *
     * @param nice 0..19; 0 does nothing
     * @return null on success (or nothing to do), else why it was not applied
     */
    public static String nice(int nice) {
        if (nice <= 0) {
            return null;
        }
        if (CAUSE != null) {
            return CAUSE;
        }
        MemorySegment cap = Libc.capture();
        try {
            int tid = (int) Libc.GETTID.invokeExact(cap);
            int rc = (int) Libc.SETPRIORITY.invokeExact(cap, Libc.PRIO_PROCESS, tid, nice);
            return rc == 0 ? null : "setpriority(PRIO_PROCESS, " + tid + ", " + nice + ") failed: " + Libc.describe(Libc.errno(cap));
        } catch (Throwable t) {
            throw Libc.unexpected("setpriority", t);
        }
    }

    /** @return the calling thread's nice value */
    public static int nice() {
        MemorySegment cap = Libc.capture();
        try {
            int tid = (int) Libc.GETTID.invokeExact(cap);
            return (int) Libc.GETPRIORITY.invokeExact(cap, Libc.PRIO_PROCESS, tid);
        } catch (Throwable t) {
            throw Libc.unexpected("getpriority", t);
        }
    }

    /**
     * Sets the calling thread's timer slack (how late the kernel may end its sleeps, to batch wake-ups).
     *
     * @param slackNs the slack, at least 1 ns
     * @return null on success, else why it was not applied
     */
    public static String timerSlack(long slackNs) {
        if (CAUSE != null) {
            return CAUSE;
        }
        MemorySegment cap = Libc.capture();
        try {
            int rc = (int) Libc.PRCTL.invokeExact(cap, Libc.PR_SET_TIMERSLACK, Math.max(1, slackNs));
            return rc == 0 ? null : "prctl(PR_SET_TIMERSLACK, " + slackNs + ") failed: " + Libc.describe(Libc.errno(cap));
        } catch (Throwable t) {
            throw Libc.unexpected("prctl", t);
        }
    }

    /**
     * Asks the scheduler for a short time slice (a {@code SCHED_OTHER} thread's {@code sched_runtime} is its
     * requested slice, 0.1..100 ms, unprivileged, on Linux 6.12+; older kernels ignore it). Keeps nice 0.
     *
     * @param sliceNs the requested slice
     * @return null on success, else why it was not applied
     */
    public static String shortSlice(long sliceNs) {
        if (CAUSE != null) {
            return CAUSE;
        }
        MemorySegment cap = Libc.capture();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment attr = arena.allocate(SCHED_ATTR_SIZE, 8); // zeroed: policy SCHED_OTHER, nice 0, no flags
            attr.set(ValueLayout.JAVA_INT, 0, SCHED_ATTR_SIZE);
            attr.set(ValueLayout.JAVA_LONG, 24, sliceNs); // sched_runtime
            long rc = (long) Libc.SYSCALL3.invokeExact(cap, Libc.SCHED_SETATTR_NR, 0L, attr, 0L);
            return rc == 0 ? null : "sched_setattr(slice " + sliceNs + " ns) failed: " + Libc.describe(Libc.errno(cap));
        } catch (Throwable t) {
            throw Libc.unexpected("sched_setattr", t);
        }
    }

    /**
     * Tunes the calling thread for the urgent path: timer slack 1 us and, when {@code sliceNs > 0}, a short slice.
     *
     * @return null on success, else what was not applied
     */
    public static String urgentThread(long sliceNs) {
        String slack = timerSlack(1_000);
        String slice = sliceNs > 0 ? shortSlice(Math.max(100_000, sliceNs)) : null;
        return slack == null && slice == null ? null : slack == null ? slice : slice == null ? slack : slack + "; " + slice;
    }
}
