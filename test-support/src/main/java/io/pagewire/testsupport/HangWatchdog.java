package io.pagewire.testsupport;

import org.junit.jupiter.api.Timeout;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.TestSource;
import org.junit.platform.engine.support.descriptor.MethodSource;
import org.junit.platform.launcher.LauncherSession;
import org.junit.platform.launcher.LauncherSessionListener;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.TestPlan;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.lang.management.LockInfo;
import java.lang.management.ManagementFactory;
import java.lang.management.MonitorInfo;
import java.lang.management.ThreadInfo;
import java.lang.reflect.AnnotatedElement;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Makes a hung test fail in minutes, with the stacks in the build log, instead of holding CI until
 * its global limit. Two ways a test run hangs, two guards:
 *
 * <ol>
 * <li><b>A test that outlives its timeout.</b> JUnit's own timeout
 *     ({@code junit.jupiter.execution.timeout.default}, or {@code @Timeout}) dumps the threads and
 *     interrupts the test thread, but then waits for it; a thread blocked in a page fault or a
 *     native call never returns. When a test runs 60 s (by default) past its timeout, this
 *     class dumps every thread (Java stacks and kernel stacks) and halts the JVM: surefire reports
 *     the crash and names the test.</li>
 * <li><b>A JVM that stopped as a whole.</b> A thread blocked in a userfaultfd page fault inside
 *     Java code holds every safepoint up; then no Java thread runs, not even the one above, and
 *     the JVM no longer answers {@code jcmd}. A heartbeat thread touches a file every second; a
 *     small shell process outside the JVM watches it and, after {@code pagewire.watchdog.stallSeconds}
 *     (default 120) without a beat, writes the kernel stacks of every thread and
 *     {@code jhsdb jstack --mixed} (which reads a stopped JVM from outside), then kills it.</li>
 * </ol>
 *
 * <p>Dumps go to the Maven process's standard error (found among this JVM's ancestors, so they
 * appear in the build log even though surefire captures the fork's own output) and to
 * {@code target/hang-dumps/}. Registered through {@code META-INF/services} as both a launcher
 * session listener and a test execution listener. System properties: {@code pagewire.watchdog}
 * ({@code false} turns it off), {@code pagewire.watchdog.stallSeconds},
 * {@code pagewire.watchdog.graceSeconds}, {@code pagewire.watchdog.dir} (where dumps go) and
 * {@code pagewire.watchdog.buildLog} ({@code none}: not into Maven's log; for the watchdog's own test).
 */
public final class HangWatchdog implements LauncherSessionListener, TestExecutionListener {
    /** Seconds a test may run past its timeout before the JVM is dumped and halted ({@code pagewire.watchdog.graceSeconds}). */
    static final long GRACE_SECONDS = Long.getLong("pagewire.watchdog.graceSeconds", 60);
    private static final long DEFAULT_TIMEOUT_SECONDS = 60;

    /** Running tests: unique id -> deadline (nanoTime). Shared by the two listener instances. */
    private static final Map<String, Running> RUNNING = new ConcurrentHashMap<>();
    private static volatile long defaultTimeoutNs = TimeUnit.SECONDS.toNanos(DEFAULT_TIMEOUT_SECONDS);
    private static volatile Thread heartbeat;

    private record Running(String name, long startNs, long deadlineNs) {
    }

    /** Public no-argument constructor for {@link java.util.ServiceLoader}. */
    public HangWatchdog() {
    }

    // ------------------------------------------------------------------ session

    @Override
    public void launcherSessionOpened(LauncherSession session) {
        if (!Boolean.parseBoolean(System.getProperty("pagewire.watchdog", "true"))) {
            return;
        }
        synchronized (HangWatchdog.class) {
            if (heartbeat != null) {
                return;
            }
            Path dir = Path.of(System.getProperty("pagewire.watchdog.dir", Path.of(System.getProperty("user.dir"), "target", "hang-dumps").toString()));
            Path beat = dir.resolve("heartbeat-" + ProcessHandle.current().pid());
            try {
                Files.createDirectories(dir);
                Files.writeString(beat, "pagewire test heartbeat\n");
            } catch (IOException e) {
                throw new UncheckedIOException("test watchdog: cannot create " + beat, e);
            }
            beat.toFile().deleteOnExit();
            startOutsideWatcher(beat, dir.resolve("stalled-jvm-" + ProcessHandle.current().pid() + ".txt"));
            Thread t = Thread.ofPlatform().daemon().name("pagewire-test-watchdog").unstarted(() -> beat(beat, dir));
            t.start();
            heartbeat = t;
        }
    }

    @Override
    public void launcherSessionClosed(LauncherSession session) {
        Thread t = heartbeat;
        if (t != null) {
            t.interrupt();
        }
    }

    private static void beat(Path beat, Path dir) {
        while (!Thread.currentThread().isInterrupted()) {
            try {
                Files.setLastModifiedTime(beat, FileTime.from(Instant.now()));
                long now = System.nanoTime();
                for (Running r : RUNNING.values()) {
                    if (now - r.deadlineNs() > 0) {
                        halt(r, now, dir);
                    }
                }
                Thread.sleep(1000); // a heartbeat: the period is the point, nothing is awaited
            } catch (InterruptedException e) {
                return;
            } catch (IOException e) {
                throw new UncheckedIOException("test watchdog: cannot touch " + beat, e);
            }
        }
    }

    // ------------------------------------------------------------------ tests

    @Override
    public void testPlanExecutionStarted(TestPlan plan) {
        plan.getConfigurationParameters().get("junit.jupiter.execution.timeout.default")
                .ifPresent(v -> defaultTimeoutNs = parseDuration(v));
    }

    @Override
    public void executionStarted(TestIdentifier id) {
        if (id.isTest()) {
            long timeoutNs = timeoutOf(id.getSource()).orElse(defaultTimeoutNs);
            long now = System.nanoTime();
            RUNNING.put(id.getUniqueId(), new Running(id.getLegacyReportingName() + " (" + id.getUniqueId() + ")", now,
                    now + timeoutNs + TimeUnit.SECONDS.toNanos(GRACE_SECONDS)));
        }
    }

    @Override
    public void executionFinished(TestIdentifier id, TestExecutionResult result) {
        RUNNING.remove(id.getUniqueId());
    }

    /** @return the {@code @Timeout} on the test method or its class (or an enclosing class), in ns */
    static Optional<Long> timeoutOf(Optional<TestSource> source) {
        if (source.isEmpty() || !(source.get() instanceof MethodSource ms)) {
            return Optional.empty();
        }
        try {
            Class<?> type = Class.forName(ms.getClassName(), false, Thread.currentThread().getContextClassLoader());
            Optional<Method> method = Stream.concat(Arrays.stream(type.getMethods()), Arrays.stream(type.getDeclaredMethods()))
                    .filter(m -> m.getName().equals(ms.getMethodName())).findFirst();
            if (method.isPresent() && method.get().isAnnotationPresent(Timeout.class)) {
                return Optional.of(nanos(method.get()));
            }
            for (Class<?> c = type; c != null; c = c.getEnclosingClass()) {
                for (Class<?> s = c; s != null && s != Object.class; s = s.getSuperclass()) {
                    if (s.isAnnotationPresent(Timeout.class)) {
                        return Optional.of(nanos(s));
                    }
                }
            }
            return Optional.empty();
        } catch (ClassNotFoundException | LinkageError e) {
            return Optional.empty(); // the engine reports that failure itself; the default timeout applies
        }
    }

    private static long nanos(AnnotatedElement e) {
        Timeout t = e.getAnnotation(Timeout.class);
        return t.unit().toNanos(t.value());
    }

    /** Parses JUnit's duration syntax: a number and an optional unit (ns, μs, ms, s, m, h, d; default s). */
    static long parseDuration(String text) {
        String s = text.trim().toLowerCase(java.util.Locale.ROOT);
        int i = 0;
        while (i < s.length() && Character.isDigit(s.charAt(i))) {
            i++;
        }
        if (i == 0) {
            throw new IllegalArgumentException("junit.jupiter.execution.timeout.default: not a duration: '" + text + "'");
        }
        long n = Long.parseLong(s.substring(0, i));
        TimeUnit unit = switch (s.substring(i).trim()) {
            case "ns" -> TimeUnit.NANOSECONDS;
            case "μs", "us" -> TimeUnit.MICROSECONDS;
            case "ms" -> TimeUnit.MILLISECONDS;
            case "", "s" -> TimeUnit.SECONDS;
            case "m" -> TimeUnit.MINUTES;
            case "h" -> TimeUnit.HOURS;
            case "d" -> TimeUnit.DAYS;
            default -> throw new IllegalArgumentException("junit.jupiter.execution.timeout.default: unknown unit in '" + text + "'");
        };
        return unit.toNanos(n);
    }

    // ------------------------------------------------------------------ dumps

    private static void halt(Running r, long now, Path dir) {
        StringBuilder b = new StringBuilder();
        b.append("=== pagewire test watchdog: ").append(r.name()).append(" still runs ")
                .append(TimeUnit.NANOSECONDS.toSeconds(now - r.startNs())).append(" s after it started, ").append(GRACE_SECONDS)
                .append(" s past its timeout; JUnit's interrupt did not end it. Threads:\n");
        ThreadInfo[] threads = ManagementFactory.getThreadMXBean().dumpAllThreads(true, true);
        Arrays.sort(threads, Comparator.comparing(ThreadInfo::getThreadName));
        for (ThreadInfo t : threads) {
            appendThread(b, t);
        }
        b.append(kernelStacks(ProcessHandle.current().pid()));
        b.append("=== halting the test JVM\n");
        report(b.toString(), dir.resolve("timeout-" + ProcessHandle.current().pid() + ".txt"));
        Runtime.getRuntime().halt(3);
    }

    /** All frames (ThreadInfo.toString stops at eight) with the locks held and waited for. */
    private static void appendThread(StringBuilder b, ThreadInfo t) {
        b.append('"').append(t.getThreadName()).append("\" #").append(t.getThreadId()).append(t.isDaemon() ? " daemon" : "")
                .append(' ').append(t.getThreadState());
        if (t.getLockName() != null) {
            b.append(" on ").append(t.getLockName());
        }
        if (t.getLockOwnerName() != null) {
            b.append(" owned by \"").append(t.getLockOwnerName()).append('"');
        }
        if (t.isInNative()) {
            b.append(" (in native)");
        }
        b.append('\n');
        StackTraceElement[] stack = t.getStackTrace();
        for (int i = 0; i < stack.length; i++) {
            b.append("\tat ").append(stack[i]).append('\n');
            for (MonitorInfo m : t.getLockedMonitors()) {
                if (m.getLockedStackDepth() == i) {
                    b.append("\t- locked ").append(m).append('\n');
                }
            }
        }
        for (LockInfo l : t.getLockedSynchronizers()) {
            b.append("\t- holds ").append(l).append('\n');
        }
        b.append('\n');
    }

    /** @return the kernel stack of every thread of {@code pid} that is blocked in the kernel (root only) */
    static String kernelStacks(long pid) {
        StringBuilder b = new StringBuilder("--- kernel stacks (/proc/").append(pid).append("/task/*/stack)\n");
        try (Stream<Path> tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path task : tasks.sorted().toList()) {
                String stack = readOrEmpty(task.resolve("stack"));
                if (!stack.isBlank()) {
                    b.append("tid ").append(task.getFileName()).append(' ').append(readOrEmpty(task.resolve("comm")).strip()).append('\n')
                            .append(stack);
                }
            }
        } catch (IOException e) {
            b.append("(not readable: ").append(e).append(")\n");
        }
        return b.toString();
    }

    private static String readOrEmpty(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return ""; // not root, or the thread ended meanwhile: that thread's stack is simply not shown
        }
    }

    /** Writes a dump to {@code file} and to the build log (Maven's standard error, else ours). */
    private static void report(String text, Path file) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        try {
            Files.write(file, bytes);
        } catch (IOException e) {
            System.err.println("test watchdog: cannot write " + file + ": " + e);
        }
        // Surefire shows what the fork prints while a test runs; Maven's own stderr is the second way
        // in (a pipe or terminal keeps it; a log file Maven writes without O_APPEND may overwrite
        // it, which is why .ci/run also prints target/hang-dumps/ after a failure).
        System.err.print(text);
        System.err.flush();
        Optional<Path> log = buildLog();
        if (log.isPresent()) {
            try (OutputStream out = Files.newOutputStream(log.get(), StandardOpenOption.WRITE, StandardOpenOption.APPEND)) {
                out.write(bytes);
            } catch (IOException e) {
                System.err.println("test watchdog: cannot write to " + log.get() + ": " + e);
            }
        }
    }

    /**
     * @return {@code /proc/PID/fd/2} of the Maven process that forked this JVM, or empty when
     *         this JVM was not started by Maven (an IDE): surefire captures the fork's own streams
     */
    static Optional<Path> buildLog() {
        if ("none".equals(System.getProperty("pagewire.watchdog.buildLog"))) {
            return Optional.empty();
        }
        Optional<ProcessHandle> p = ProcessHandle.current().parent();
        while (p.isPresent()) {
            String cmd = p.get().info().commandLine().orElse("");
            if (cmd.contains("org.codehaus.plexus.classworlds") || cmd.contains("plexus-classworlds")) {
                Path fd = Path.of("/proc", Long.toString(p.get().pid()), "fd", "2");
                return Files.isWritable(fd) ? Optional.of(fd) : Optional.empty();
            }
            p = p.get().parent();
        }
        return Optional.empty();
    }

    /** Starts the shell process that watches the heartbeat from outside the JVM. */
    private static void startOutsideWatcher(Path beat, Path dump) {
        long stall = Long.getLong("pagewire.watchdog.stallSeconds", 120);
        String log = buildLog().map(Path::toString).orElse("/dev/null");
        String jhsdb = Path.of(System.getProperty("java.home"), "bin", "jhsdb").toString();
        try {
            new ProcessBuilder("sh", "-c", WATCHER, "pagewire-test-watchdog", Long.toString(ProcessHandle.current().pid()), beat.toString(),
                    Long.toString(stall), log, dump.toString(), jhsdb)
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .redirectError(ProcessBuilder.Redirect.DISCARD)
                    .start();
        } catch (IOException e) {
            throw new UncheckedIOException("test watchdog: cannot start 'sh' to watch this JVM", e);
        }
    }

    /**
     * The outside watcher: $1 pid, $2 heartbeat file, $3 stall seconds, $4 build log, $5 dump file,
     * $6 jhsdb. Its streams are discarded (surefire would otherwise wait for it), so it writes to
     * the paths it is given. Ends when the JVM does.
     */
    private static final String WATCHER = """
            pid=$1; beat=$2; stall=$3; log=$4; dump=$5; jhsdb=$6
            while kill -0 "$pid" 2>/dev/null; do
              sleep 5
              now=$(date +%s); last=$(stat -c %Y "$beat" 2>/dev/null) || continue
              if [ $((now - last)) -ge "$stall" ]; then
                {
                  echo "=== pagewire test watchdog: test JVM $pid made no progress for $((now - last)) s: no Java thread runs"
                  echo "    (typically a thread blocked in a userfaultfd page fault inside Java code, holding a safepoint up)."
                  echo "--- kernel stacks"
                  for t in /proc/"$pid"/task/*; do
                    echo "tid ${t##*/} $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
                    cat "$t/stack" 2>/dev/null
                  done
                  echo "--- jhsdb jstack --mixed --pid $pid"
                  timeout 90 "$jhsdb" jstack --mixed --pid "$pid" 2>&1
                  echo "=== killing test JVM $pid"
                } > "$dump" 2>&1
                cat "$dump" >> "$log" 2>/dev/null
                kill -9 "$pid"
                exit 0
              fi
            done
            """;
}
