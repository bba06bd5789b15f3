package io.pagewire.transport.tcp.net;

import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * The scheduling priority (nice value) of the calling OS thread. Java's thread priorities have
 * no effect on Linux; the kernel's per-thread nice value does. Any thread may make itself
 * nicer (lower priority) without privileges; only CAP_SYS_NICE may go below its current value.
 */
public final class ThreadPriority {
    private ThreadPriority() {
    }

    /**
     * Sets the calling thread's nice value.
     *
     * @param nice -20 (highest) .. 19 (lowest)
     * @throws IOException with the errno (EACCES / EPERM when lowering it needs privileges)
     */
    public static void setNice(int nice) throws IOException {
        MemorySegment cap = Libc.capture();
        try {
            int tid = (int) Libc.GETTID.invokeExact(cap);
            int rc = (int) Libc.SETPRIORITY.invokeExact(cap, Libc.PRIO_PROCESS, tid, nice);
            if (rc < 0) {
                throw new SocketErrnoException("setpriority", Libc.errno(cap), "nice " + nice + " for thread " + tid);
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /** @return the calling thread's nice value */
    public static int nice() {
        MemorySegment cap = Libc.capture();
        try {
            int tid = (int) Libc.GETTID.invokeExact(cap);
            return (int) Libc.GETPRIORITY.invokeExact(cap, Libc.PRIO_PROCESS, tid);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
