package io.pagewire.transport.aeron;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * Per-thread scheduling hints on Linux: the nice value, so background threads (the bulk media driver, the
 * destination's background receiver) yield the CPU to urgent ones on a busy host (Java thread priorities do nothing
 * on Linux; the kernel's per-thread nice value does, and any thread may raise its own without privileges); and the
 * timer slack, so a short park of an urgent thread ends when asked rather than up to 50 us later (the default
 * slack), which would add to every hop of an urgent message; and a short scheduler slice for urgent threads, so they
 * preempt CPU-bound page-stream threads when they wake ({@link #shortSlice}).
 *
 * <p>Probed once. When native access is not enabled for this module (module path without
 * {@code --enable-native-access=io.pagewire.transport.aeron}) or the platform has no {@code setpriority},
 * {@link #unavailabilityCause()} says why and {@link #apply} does nothing: niceness is a tuning aid, not a
 * correctness requirement.
 */
final class ThreadTuning {
    private static final int PRIO_PROCESS = 0;
    private static final long SYS_GETTID = 186; // x86_64; aarch64 uses 178
    private static final int PR_SET_TIMERSLACK = 29;
    private static final long SYS_SCHED_SETATTR_X86_64 = 314;
    private static final long SYS_SCHED_SETATTR_AARCH64 = 274;
    private static final int SCHED_ATTR_SIZE = 56;
    private static final MethodHandle SETPRIORITY;
    private static final MethodHandle PRCTL;
    private static final MethodHandle GETTID;
    private static final MethodHandle SCHED_SETATTR;
    private static final StructLayout CAPTURE;
    private static final VarHandle ERRNO;
    private static final String CAUSE;

    static {
        MethodHandle set = null;
        MethodHandle prctl = null;
        MethodHandle tid = null;
        MethodHandle setattr = null;
        StructLayout capture = null;
        VarHandle errno = null;
        String cause = null;
        try {
            if (!ThreadTuning.class.getModule().isNativeAccessEnabled()) {
                cause = "native access is not enabled for " + moduleName() + " (add --enable-native-access="
                        + moduleName() + ")";
            } else if (!System.getProperty("os.name", "").toLowerCase().contains("linux")) {
                cause = "per-thread nice values are a Linux feature";
            } else {
                Linker linker = Linker.nativeLinker();
                Linker.Option ccs = Linker.Option.captureCallState("errno");
                capture = Linker.Option.captureStateLayout();
                errno = capture.varHandle(java.lang.foreign.MemoryLayout.PathElement.groupElement("errno"));
                set = linker.downcallHandle(linker.defaultLookup().find("setpriority").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), ccs);
                prctl = linker.downcallHandle(linker.defaultLookup().find("prctl").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), Linker.Option.firstVariadicArg(1),
                        ccs);
                String arch = System.getProperty("os.arch", "");
                long nr = arch.equals("aarch64") ? 178 : SYS_GETTID;
                MethodHandle syscall = linker.downcallHandle(linker.defaultLookup().find("syscall").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), Linker.Option.firstVariadicArg(1));
                tid = java.lang.invoke.MethodHandles.insertArguments(syscall, 0, nr);
                MethodHandle syscall4 = linker.downcallHandle(linker.defaultLookup().find("syscall").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS,
                                ValueLayout.JAVA_LONG), Linker.Option.firstVariadicArg(1), ccs);
                setattr = java.lang.invoke.MethodHandles.insertArguments(syscall4, 1,
                        arch.equals("aarch64") ? SYS_SCHED_SETATTR_AARCH64 : SYS_SCHED_SETATTR_X86_64);
            }
        } catch (RuntimeException | LinkageError e) {
            cause = "setpriority/prctl are not available: " + e;
            set = null;
            prctl = null;
        }
        SETPRIORITY = set;
        PRCTL = prctl;
        GETTID = tid;
        SCHED_SETATTR = setattr;
        CAPTURE = capture;
        ERRNO = errno;
        CAUSE = cause;
    }

    private ThreadTuning() {
    }

    private static String moduleName() {
        Module m = ThreadTuning.class.getModule();
        return m.isNamed() ? m.getName() : "ALL-UNNAMED";
    }

    /**
     * Sets the calling thread's timer slack (how late the kernel may end its sleeps, to batch wake-ups).
     *
     * @param slackNs the slack, at least 1 ns
     * @return null on success, else why it was not applied (for a log line)
     */
    static String timerSlack(long slackNs) {
        if (CAUSE != null) {
            return CAUSE;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE);
            int rc = (int) PRCTL.invokeExact(state, PR_SET_TIMERSLACK, Math.max(1, slackNs));
            if (rc != 0) {
                return "prctl(PR_SET_TIMERSLACK, " + slackNs + ") failed with errno " + (int) ERRNO.get(state, 0L);
            }
            return null;
        } catch (Throwable t) {
            return "prctl failed: " + t;
        }
    }

    /**
     * Asks the scheduler for a short time slice for the calling thread (Linux 6.12+ EEVDF: a {@code SCHED_OTHER}
     * thread's {@code sched_runtime} is its requested slice, 0.1..100 ms, unprivileged). A thread with a short slice
     * has an early deadline, so when it wakes it preempts a CPU-bound thread promptly instead of waiting up to the
     * default 3 ms slice: on a host saturated by the page stream, this is what keeps an urgent wake-up on time.
     * Keeps the thread at nice 0. Older kernels ignore the runtime of a SCHED_OTHER thread.
     *
     * @param sliceNs the requested slice
     * @return null on success, else why it was not applied (for a log line)
     */
    static String shortSlice(long sliceNs) {
        if (CAUSE != null) {
            return CAUSE;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE);
            MemorySegment attr = arena.allocate(SCHED_ATTR_SIZE, 8); // zeroed: policy SCHED_OTHER, nice 0, no flags
            attr.set(ValueLayout.JAVA_INT, 0, SCHED_ATTR_SIZE);
            attr.set(ValueLayout.JAVA_LONG, 24, sliceNs); // sched_runtime
            long rc = (long) SCHED_SETATTR.invokeExact(state, 0L, attr, 0L);
            if (rc != 0) {
                return "sched_setattr(slice " + sliceNs + " ns) failed with errno " + (int) ERRNO.get(state, 0L);
            }
            return null;
        } catch (Throwable t) {
            return "sched_setattr failed: " + t;
        }
    }

    /** Requested slice of urgent threads (system property {@code pagewire.aeron.urgent.slice-us}, 0 = kernel default). */
    static final long URGENT_SLICE_NS = java.util.concurrent.TimeUnit.MICROSECONDS.toNanos(
            Drivers.longProperty("pagewire.aeron.urgent.slice-us", 100, 0, 100_000));

    /**
     * Tunes the calling thread for the urgent path: timer slack 1 us and a short scheduler slice.
     *
     * @return null on success, else what was not applied (for a log line)
     */
    static String urgentThread() {
        String slack = timerSlack(1_000);
        String slice = URGENT_SLICE_NS > 0 ? shortSlice(Math.max(100_000, URGENT_SLICE_NS)) : null;
        return slack == null && slice == null ? null : slack == null ? slice : slice == null ? slack : slack + "; " + slice;
    }

    /** @return null when nice values can be set, else why not */
    static String unavailabilityCause() {
        return CAUSE;
    }

    /**
     * Sets the calling thread's nice value (only ever raises it: lowering needs CAP_SYS_NICE).
     *
     * @param nice 0..19; 0 does nothing
     * @return null on success (or nothing to do), else why it was not applied (for a log line)
     */
    static String apply(int nice) {
        if (nice <= 0) {
            return null;
        }
        if (CAUSE != null) {
            return CAUSE;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE);
            int tid = (int) (long) GETTID.invokeExact();
            int rc = (int) SETPRIORITY.invokeExact(state, PRIO_PROCESS, tid, nice);
            if (rc != 0) {
                return "setpriority(PRIO_PROCESS, " + tid + ", " + nice + ") failed with errno " + (int) ERRNO.get(state, 0L);
            }
            return null;
        } catch (Throwable t) {
            return "setpriority failed: " + t;
        }
    }
}
