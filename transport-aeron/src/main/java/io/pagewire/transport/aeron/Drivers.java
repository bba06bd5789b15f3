package io.pagewire.transport.aeron;

import io.aeron.Aeron;
import io.aeron.CommonContext;
import io.aeron.driver.MediaDriver;
import io.aeron.driver.ThreadingMode;
import io.aeron.exceptions.ConductorServiceTimeoutException;
import io.aeron.exceptions.DriverTimeoutException;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.linux.ThreadTuning;

import java.io.File;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * The media drivers and Aeron clients of this process, shared by every listener and connection and reference
 * counted: a driver starts with its first user and stops (its directory deleted) with its last.
 *
 * <h2>Two embedded drivers</h2>
 * One Aeron driver gives no priority between publications: its sender thread takes turns, about one MTU per
 * publication per duty cycle, and retransmits, status messages and the receiver's socket reads share the same
 * thread (and, in {@code SHARED} mode, the same thread as the conductor). So the urgent lane runs in a driver of its
 * own ({@link Role#URGENT}: a short idle back-off, normal scheduling priority) and the page stream in another
 * ({@link Role#BULK}: long back-off, its thread niced), each in {@code SHARED} threading mode: one thread per driver,
 * never busy-spinning when idle.
 *
 * <h2>Directories</h2>
 * Embedded drivers live in {@code <base>/pagewire-aeron-<user>/<pid>-<role>-<n>} (base: system property
 * {@code pagewire.aeron.dir.base}, else {@code /dev/shm}, else {@code java.io.tmpdir}), deleted when the driver
 * stops. Directories of processes that no longer exist (a SIGKILLed migration) are swept when a driver starts or
 * stops and when this JVM exits.
 *
 * <h2>External drivers</h2>
 * {@code aeron.dir=PATH} names a running driver (standalone, or another process's embedded one, which is how
 * {@code aeron:ipc} crosses processes): one client per directory, shared and counted the same way.
 *
 * <p>Thread-safe: every change holds the class lock.
 */
final class Drivers {
    private static final System.Logger LOG = System.getLogger(Drivers.class.getName());

    /** Which embedded driver. */
    enum Role {
        /** Handshakes and urgent streams: reacts within tens of microseconds. */
        URGENT,
        /** The background page stream: throughput first, niced. */
        BULK
    }

    /**
     * Most senders (Aeron sessions, each an image with its own log buffers) the embedded drivers take on one
     * stream of one receiving endpoint; the driver ignores further SETUPs. pagewire needs one per connection
     * stream and, on a listening stream, one per source in its handshake (16 + 8 authenticating + 8 waiting for
     * accept at most): a stranger cannot make the driver map more logs than this per stream.
     */
    static final int STREAM_SESSION_LIMIT = 64;

    /** Nice value of the bulk driver's thread. */
    static final int BULK_DRIVER_NICE = (int) longProperty("pagewire.aeron.bulk.nice", 10, 0, 19);

    private static final Object LOCK = new Object();
    private static final Map<String, Shared> BY_KEY = new HashMap<>(); // guarded by LOCK
    private static final AtomicInteger SEQUENCE = new AtomicInteger();
    private static boolean hookInstalled; // guarded by LOCK

    private Drivers() {
    }

    /** Requested scheduler slice of urgent threads (system property {@code pagewire.aeron.urgent.slice-us}, 0 = kernel default). */
    static final long URGENT_SLICE_NS = java.util.concurrent.TimeUnit.MICROSECONDS.toNanos(
            longProperty("pagewire.aeron.urgent.slice-us", 100, 0, 100_000));

    static long longProperty(String name, long defaultValue, long min, long max) {
        String v = System.getProperty(name);
        if (v == null) {
            return defaultValue;
        }
        long value;
        try {
            value = Long.parseLong(v.strip());
        } catch (NumberFormatException e) {
            throw new TransportException(Kind.INVALID_CONFIG, "system property " + name + "=" + v + " is not an integer");
        }
        if (value < min || value > max) {
            throw new TransportException(Kind.INVALID_CONFIG, "system property " + name + "=" + v + " is outside " + min + ".." + max);
        }
        return value;
    }

    /** @return the directory that holds this user's embedded driver directories */
    static Path root() {
        String base = System.getProperty("pagewire.aeron.dir.base");
        Path b;
        if (base != null) {
            b = Path.of(base);
        } else if (Files.isDirectory(Path.of("/dev/shm")) && Files.isWritable(Path.of("/dev/shm"))) {
            b = Path.of("/dev/shm");
        } else {
            b = Path.of(System.getProperty("java.io.tmpdir"));
        }
        String user = System.getProperty("user.name", "user").replaceAll("[^A-Za-z0-9_.-]", "_");
        return b.resolve("pagewire-aeron-" + user);
    }

    /** One driver (embedded or not) and its client. */
    private static final class Shared {
        final String key;
        final String directory;
        final MediaDriver driver; // null for an external driver
        final List<Consumer<Throwable>> fatalListeners = new CopyOnWriteArrayList<>();
        Aeron aeron; // set once, under LOCK, before the Shared is published
        volatile Throwable fatal;
        int references; // guarded by LOCK

        Shared(String key, String directory, MediaDriver driver) {
            this.key = key;
            this.directory = directory;
            this.driver = driver;
        }
    }

    /** A reference to a driver and its client; {@link #close()} releases it. */
    static final class Lease implements AutoCloseable {
        private final Shared shared;
        private boolean closed; // guarded by LOCK

        private Lease(Shared shared) {
            this.shared = shared;
        }

        /** @return the Aeron client */
        Aeron aeron() {
            return shared.aeron;
        }

        /** @return the driver directory */
        String directory() {
            return shared.directory;
        }

        /** @return true when this process runs the driver */
        boolean embedded() {
            return shared.driver != null;
        }

        /** @return the client's fatal error (driver gone), or null */
        Throwable fatal() {
            return shared.fatal;
        }

        /** Calls {@code listener} (on the client's conductor thread) when the driver stops answering. */
        void onFatal(Consumer<Throwable> listener) {
            shared.fatalListeners.add(listener);
            Throwable f = shared.fatal;
            if (f != null) {
                listener.accept(f);
            }
        }

        /** Stops calling {@code listener}. */
        void removeFatalListener(Consumer<Throwable> listener) {
            shared.fatalListeners.remove(listener);
        }

        @Override
        public void close() {
            release(this);
        }

        @Override
        public String toString() {
            return (embedded() ? "embedded" : "external") + " driver " + shared.directory;
        }
    }

    /**
     * @param role which embedded driver
     * @return a lease on this process's embedded driver for {@code role}, started if needed
     */
    static Lease embedded(Role role) {
        synchronized (LOCK) {
            String key = "embedded:" + role;
            Shared s = BY_KEY.get(key);
            if (s == null || s.fatal != null) {
                if (s != null) {
                    BY_KEY.remove(key); // its users fail on their own; a new driver serves new users
                }
                installHook();
                sweepStale();
                s = startEmbedded(key, role);
                BY_KEY.put(key, s);
                BY_KEY.put("dir:" + s.directory, s);
            }
            s.references++;
            return new Lease(s);
        }
    }

    /**
     * @param directory a driver directory: one of ours, or a running external driver
     * @param uri the URI that named it, for messages
     * @return a lease on a client of that driver
     */
    static Lease directory(String directory, String uri) {
        String canonical = new File(directory).getAbsoluteFile().toPath().normalize().toString();
        synchronized (LOCK) {
            Shared s = BY_KEY.get("dir:" + canonical);
            if (s != null && s.fatal == null) {
                s.references++;
                return new Lease(s);
            }
            boolean active;
            try {
                active = CommonContext.isDriverActive(new File(canonical), TimeUnit.SECONDS.toMillis(10),
                        m -> LOG.log(System.Logger.Level.DEBUG, m));
            } catch (RuntimeException e) {
                throw new TransportException(Kind.UNAVAILABLE, "aeron: the media driver at " + canonical + " (aeron.dir in '" + uri
                        + "') is not usable: " + e, e);
            }
            if (!active) {
                throw new TransportException(Kind.UNAVAILABLE, "aeron: no media driver is running at " + canonical + " (aeron.dir in '"
                        + uri + "'): start one (java io.aeron.driver.MediaDriver with -Daeron.dir=" + canonical
                        + ") or leave out aeron.dir to use an embedded driver");
            }
            s = new Shared("dir:" + canonical, canonical, null);
            s.aeron = connect(s, canonical, "pagewire-aeron-client");
            BY_KEY.put(s.key, s);
            s.references++;
            return new Lease(s);
        }
    }

    private static Shared startEmbedded(String key, Role role) {
        Path root = root();
        try {
            Files.createDirectories(root);
        } catch (IOException e) {
            throw new TransportException(Kind.UNAVAILABLE, "aeron: cannot create the driver directory root " + root + ": " + e.getMessage()
                    + " (set -Dpagewire.aeron.dir.base to a writable directory)", e);
        }
        String dir = root.resolve(ProcessHandle.current().pid() + "-" + role.name().toLowerCase() + "-" + SEQUENCE.incrementAndGet()).toString();
        boolean urgent = role == Role.URGENT;
        String threadName = "pagewire-aeron-" + role.name().toLowerCase() + "-driver";
        MediaDriver.Context ctx = new MediaDriver.Context()
                .aeronDirectoryName(dir)
                .dirDeleteOnStart(true)
                .dirDeleteOnShutdown(true)
                .warnIfDirectoryExists(false)
                .threadingMode(ThreadingMode.SHARED)
                .asyncExecutorEnabled(false) // name resolution on the driver thread: one thread per driver, not two
                // The bulk driver also carries urgent streams with urgent-driver=shared: it follows both activities.
                .sharedIdleStrategy(urgent ? new ActivityIdleStrategy(ActivityIdleStrategy.URGENT)
                        : new ActivityIdleStrategy(ActivityIdleStrategy.BULK, ActivityIdleStrategy.URGENT))
                .sharedThreadFactory(r -> {
                    Thread t = new Thread(() -> {
                        String why = urgent ? ThreadTuning.urgentThread(URGENT_SLICE_NS) : ThreadTuning.nice(BULK_DRIVER_NICE);
                        if (why != null) {
                            LOG.log(System.Logger.Level.DEBUG, role.name().toLowerCase() + " driver thread not tuned: " + why);
                        }
                        r.run();
                    }, threadName);
                    t.setDaemon(true);
                    return t;
                })
                .termBufferSparseFile(true)
                .streamSessionLimit(STREAM_SESSION_LIMIT)
                .spiesSimulateConnection(false)
                .printConfigurationOnStart(false)
                .errorHandler(e -> LOG.log(System.Logger.Level.WARNING, "aeron " + role.name().toLowerCase() + " media driver " + dir + ": " + e, e));
        MediaDriver driver;
        try {
            driver = MediaDriver.launch(ctx);
        } catch (RuntimeException | LinkageError e) {
            ctx.close();
            throw new TransportException(Kind.UNAVAILABLE, "aeron: cannot start the embedded " + role.name().toLowerCase()
                    + " media driver in " + dir + ": " + e + " (needs a writable directory with room for its log buffers;"
                    + " see -Dpagewire.aeron.dir.base, and the JVM flag --add-opens java.base/jdk.internal.misc=org.agrona (module path) or =ALL-UNNAMED (class path))", e);
        }
        Shared s = new Shared(key, dir, driver);
        try {
            s.aeron = connect(s, dir, "pagewire-aeron-" + role.name().toLowerCase() + "-client");
        } catch (RuntimeException e) {
            driver.close();
            throw e;
        }
        LOG.log(System.Logger.Level.DEBUG, "started the embedded " + role.name().toLowerCase() + " media driver in " + dir);
        return s;
    }

    private static Aeron connect(Shared shared, String dir, String threadName) {
        Aeron.Context ctx = new Aeron.Context()
                .aeronDirectoryName(dir)
                .clientName("pagewire")
                .threadFactory(r -> {
                    Thread t = new Thread(r, threadName);
                    t.setDaemon(true);
                    return t;
                })
                .errorHandler(e -> onClientError(shared, e));
        try {
            return Aeron.connect(ctx);
        } catch (RuntimeException | LinkageError e) {
            throw new TransportException(Kind.UNAVAILABLE, "aeron: cannot connect a client to the media driver at " + dir + ": " + e, e);
        }
    }

    private static void onClientError(Shared s, Throwable e) {
        if (e instanceof DriverTimeoutException || e instanceof ConductorServiceTimeoutException
                || e instanceof io.aeron.exceptions.AeronException ae && ae.category() == io.aeron.exceptions.AeronException.Category.FATAL) {
            if (s.fatal == null) {
                s.fatal = e;
                LOG.log(System.Logger.Level.WARNING, "aeron: the media driver at " + s.directory + " stopped answering: " + e);
                for (Consumer<Throwable> l : s.fatalListeners) {
                    l.accept(e);
                }
            }
        } else {
            LOG.log(System.Logger.Level.DEBUG, "aeron client of " + s.directory + ": " + e, e);
        }
    }

    private static void release(Lease lease) {
        Shared s = lease.shared;
        synchronized (LOCK) {
            if (lease.closed) {
                return;
            }
            lease.closed = true;
            if (--s.references > 0) {
                return;
            }
            BY_KEY.remove(s.key, s);
            BY_KEY.remove("dir:" + s.directory, s);
            closeShared(s);
            if (s.driver != null) {
                sweepStale();
            }
        }
    }

    /**
     * Closes a client and its driver; failures are reported, never hidden. Runs with the interrupt flag cleared:
     * closing joins the agent threads, and an interrupted join would leave them running (a connection thread that
     * close() interrupted may be the one releasing the last lease).
     */
    private static void closeShared(Shared s) {
        boolean interrupted = Thread.interrupted();
        try {
            closeSharedUninterrupted(s);
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static void closeSharedUninterrupted(Shared s) {
        RuntimeException failure = null;
        try {
            s.aeron.close();
        } catch (RuntimeException e) {
            failure = e;
        }
        if (s.driver != null) {
            try {
                s.driver.close();
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
            deleteTree(Path.of(s.directory)); // dirDeleteOnShutdown did it already unless the driver failed
        }
        if (failure != null) {
            LOG.log(System.Logger.Level.WARNING, "aeron: closing the client/driver of " + s.directory + " failed: " + failure, failure);
        }
    }

    /** Deletes driver directories of processes that no longer exist (this process's own drivers delete theirs). */
    static void sweepStale() {
        Path root = root();
        if (!Files.isDirectory(root)) {
            return;
        }
        long self = ProcessHandle.current().pid();
        List<Path> stale = new ArrayList<>();
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(root)) {
            for (Path d : dirs) {
                String name = d.getFileName().toString();
                int dash = name.indexOf('-');
                if (dash <= 0) {
                    continue;
                }
                long pid;
                try {
                    pid = Long.parseLong(name.substring(0, dash));
                } catch (NumberFormatException e) {
                    continue; // not one of ours
                }
                if (pid != self && ProcessHandle.of(pid).map(p -> !p.isAlive()).orElse(true)) {
                    stale.add(d);
                }
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: cannot list " + root + ": " + e);
            return;
        }
        for (Path d : stale) {
            LOG.log(System.Logger.Level.DEBUG, "aeron: removing the driver directory of a process that ended: " + d);
            deleteTree(d);
        }
    }

    /** Deletes a directory tree; files another process (or driver) removed meanwhile are fine. */
    static void deleteTree(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try {
            Files.walkFileTree(dir, new java.nio.file.SimpleFileVisitor<>() {
                @Override
                public java.nio.file.FileVisitResult visitFile(Path file, java.nio.file.attribute.BasicFileAttributes attrs) throws IOException {
                    Files.deleteIfExists(file);
                    return java.nio.file.FileVisitResult.CONTINUE;
                }

                @Override
                public java.nio.file.FileVisitResult visitFileFailed(Path file, IOException e) throws IOException {
                    if (e instanceof java.nio.file.NoSuchFileException) {
                        return java.nio.file.FileVisitResult.CONTINUE; // already gone
                    }
                    throw e;
                }

                @Override
                public java.nio.file.FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                    if (e != null && !(e instanceof java.nio.file.NoSuchFileException)) {
                        throw e;
                    }
                    Files.deleteIfExists(d);
                    return java.nio.file.FileVisitResult.CONTINUE;
                }
            });
        } catch (java.nio.file.NoSuchFileException e) {
            // removed by someone else while we walked it: the goal is reached
            LOG.log(System.Logger.Level.TRACE, "aeron: " + dir + " vanished while being deleted");
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "aeron: could not delete " + dir + ": " + e);
        }
    }

    private static void installHook() {
        if (hookInstalled) {
            return;
        }
        hookInstalled = true;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            List<Shared> open;
            synchronized (LOCK) {
                open = new ArrayList<>(new java.util.LinkedHashSet<>(BY_KEY.values()));
                BY_KEY.clear();
            }
            for (Shared s : open) {
                if (s.driver != null) {
                    closeShared(s); // an application that exits without closing still leaves no files
                }
            }
            sweepStale();
        }, "pagewire-aeron-cleanup"));
    }

    /** @return the directories of the embedded drivers running now (for tests) */
    static List<String> runningEmbedded() {
        synchronized (LOCK) {
            List<String> out = new ArrayList<>();
            for (Map.Entry<String, Shared> e : BY_KEY.entrySet()) {
                if (e.getKey().startsWith("embedded:")) {
                    out.add(e.getValue().directory);
                }
            }
            return out;
        }
    }
}
