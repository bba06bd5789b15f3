package io.pagewire.agent.guest;

import io.pagewire.agent.GuestControl;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongPredicate;

/**
 * A guest for demos, tests and benchmarks: vCPU threads that write into guest RAM at a set
 * dirty rate and pattern, as QEMU's own migration test guest does. Every write increments one
 * byte of a page (byte {@code 8 * vcpu} of it, so vCPUs never race on the same byte), so memory
 * keeps changing in a way a destination copy can be checked against.
 *
 * <h2>Threading</h2>
 * {@link #pause()} returns only when every vCPU has stopped between two writes; no vCPU writes
 * again before {@link #resume()}. Throttling works as QEMU's cpu-throttle: each vCPU sleeps its
 * share of every 10 ms time slice.
 */
public final class SyntheticGuest implements GuestControl, AutoCloseable {

    /** Where the vCPUs write. */
    public enum Pattern {
        /** No writes at all. */
        IDLE,
        /** Each vCPU sweeps its share of the working set page by page, round and round. */
        SEQUENTIAL,
        /** Uniformly random pages of the working set. */
        RANDOM,
        /** 90 % of writes to the first tenth of the working set, the rest uniformly over it. */
        HOTSET
    }

    /**
     * @param vcpus number of vCPU threads
     * @param dirtyRateBytesPerSec pages written per second times page size, for all vCPUs together; 0 = as fast as possible
     * @param pattern where they write
     * @param workingSetBytes the part of RAM written (from offset 0), at most the RAM size
     * @param seed random seed
     * @param access write (each access increments a byte) or read (each access reads a byte of a
     *               page, from native code: a postcopy destination's guest, whose RAM then stays
     *               comparable with the source's, and whose faults cannot stall the JVM's safepoints)
     */
    public record Config(int vcpus, long dirtyRateBytesPerSec, Pattern pattern, long workingSetBytes, long seed, Access access) {
        /** A guest that writes. */
        public Config(int vcpus, long dirtyRateBytesPerSec, Pattern pattern, long workingSetBytes, long seed) {
            this(vcpus, dirtyRateBytesPerSec, pattern, workingSetBytes, seed, Access.WRITE);
        }

        public Config {
            Objects.requireNonNull(access, "access");
            Objects.requireNonNull(pattern, "pattern");
            if (vcpus < 1 || vcpus > 1024) {
                throw new IllegalArgumentException("vcpus " + vcpus + " outside 1..1024");
            }
            if (dirtyRateBytesPerSec < 0) {
                throw new IllegalArgumentException("dirty rate " + dirtyRateBytesPerSec + " is negative");
            }
        }
    }

    /** What a vCPU does with a page. */
    public enum Access {
        /** Increment a byte of the page, from Java. */
        WRITE,
        /** Read a byte of the page, from native code. */
        READ,
        /**
         * Add 1 to the vCPU's own 8-byte write counter in the page (native-order long at {@code 8 * vcpu}), from
         * native code: for RAM under synchronous write-protection (a live snapshot), where a write stops the vCPU
         * until the page is saved and a stop inside Java code could hold up the JVM's safepoints. Each page then
         * says how often each vCPU wrote it, so a snapshot can be compared with RAM at its start instant.
         */
        STAMP
    }

    private static final long SLICE_NS = TimeUnit.MILLISECONDS.toNanos(10);

    private final MemorySegment ram;
    private final long pageSize;
    private final Config config;
    private final long workingSetPages;
    private final LongPredicate writable;
    private final List<Thread> vcpus = new ArrayList<>();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private boolean pauseRequested; // guarded by lock
    private int parked;             // vCPUs stopped at the pause point; guarded by lock
    private volatile boolean pausing;
    private volatile boolean stopped;
    private volatile int throttlePercent;
    private final AtomicLong writes = new AtomicLong();
    private final int[] threadIds;
    private final java.util.concurrent.CountDownLatch idsKnown;
    /** Keeps read accesses from being optimised away. */
    private volatile long readSink;

    /**
     * @param ram guest RAM
     * @param pageSize page size
     * @param config vCPUs, rate, pattern
     * @param writable which pages a vCPU may write (false for ballooned pages, which a guest gave back)
     */
    public SyntheticGuest(MemorySegment ram, long pageSize, Config config, LongPredicate writable) {
        this.ram = ram;
        this.pageSize = pageSize;
        this.config = config;
        long ws = Math.min(config.workingSetBytes() <= 0 ? ram.byteSize() : config.workingSetBytes(), ram.byteSize());
        this.workingSetPages = Math.max(1, ws / pageSize);
        this.writable = writable;
        this.threadIds = new int[config.pattern() == Pattern.IDLE ? 0 : config.vcpus()];
        this.idsKnown = new java.util.concurrent.CountDownLatch(threadIds.length);
        if (config.pattern() != Pattern.IDLE) {
            for (int i = 0; i < config.vcpus(); i++) {
                int id = i;
                vcpus.add(Thread.ofPlatform().daemon().name("vcpu-" + i).unstarted(() -> run(id)));
            }
        }
    }

    /** Starts the vCPUs; call once, before {@link #pause()}. */
    public SyntheticGuest start() {
        vcpus.forEach(Thread::start);
        return this;
    }

    /** @return the vCPU threads (the agent's blocktime accounting identifies vCPUs by them) */
    public List<Thread> vcpuThreads() {
        return List.copyOf(vcpus);
    }

    /**
     * @return the vCPU threads' kernel thread ids (what userfaultfd reports for a fault), index =
     *         vCPU; waits until every vCPU has started
     */
    public int[] vcpuThreadIds() throws InterruptedException {
        idsKnown.await();
        return threadIds.clone();
    }

    /** @return page writes (or reads) so far */
    public long writes() {
        return writes.get();
    }

    /** @return the configuration */
    public Config config() {
        return config;
    }

    private void run(int id) {
        threadIds[id] = io.pagewire.ramtracker.linux.Linux.isAvailable() ? io.pagewire.ramtracker.linux.Userfaultfd.currentThreadId() : -1;
        idsKnown.countDown();
        boolean reads = config.access() == Access.READ;
        boolean stamps = config.access() == Access.STAMP;
        long readAcc = 0;
        long pagesPerSecond = config.dirtyRateBytesPerSec() == 0 ? 0 : Math.max(1, config.dirtyRateBytesPerSec() / pageSize / config.vcpus());
        long offsetInPage = (8L * id) % pageSize;
        long rng = config.seed() * 0x9E3779B97F4A7C15L + id + 1;
        long share = Math.max(1, workingSetPages / config.vcpus());
        long sweepStart = Math.min(id * share, workingSetPages - 1);
        long sweep = sweepStart;
        long started = System.nanoTime();
        long done = 0;
        long sliceStart = started;
        while (!stopped) {
            if (pausing) {
                parkForPause();
                started = System.nanoTime(); // the dirty rate restarts after a pause
                done = 0;
                sliceStart = started;
                continue;
            }
            // A batch of writes between checks keeps the per-write cost low.
            for (int k = 0; k < 16; k++) {
                long page;
                switch (config.pattern()) {
                    case SEQUENTIAL -> {
                        page = sweep;
                        sweep = sweep + 1 >= Math.min(workingSetPages, sweepStart + share) ? sweepStart : sweep + 1;
                    }
                    case RANDOM -> {
                        rng = next(rng);
                        page = Long.remainderUnsigned(rng, workingSetPages);
                    }
                    case HOTSET -> {
                        rng = next(rng);
                        long hot = Math.max(1, workingSetPages / 10);
                        page = Long.remainderUnsigned(rng >>> 8, 10) < 9 ? Long.remainderUnsigned(rng, hot) : Long.remainderUnsigned(rng, workingSetPages);
                    }
                    default -> throw new IllegalStateException(config.pattern().toString());
                }
                if (!writable.test(page)) {
                    continue;
                }
                long at = page * pageSize + offsetInPage;
                if (reads) {
                    // From native code: this memory may be userfaultfd's (postcopy), see Mappings.touchIsZero.
                    readAcc += io.pagewire.ramtracker.linux.Mappings.touchIsZero(ram.address() + at) ? 1 : 0;
                } else if (stamps) {
                    long v = io.pagewire.ramtracker.linux.NativeMemory.getLong(ram, at);
                    io.pagewire.ramtracker.linux.NativeMemory.setLong(ram, at, v + 1);
                } else {
                    byte b = ram.get(ValueLayout.JAVA_BYTE, at);
                    ram.set(ValueLayout.JAVA_BYTE, at, (byte) (b + 1));
                }
                done++;
            }
            writes.addAndGet(16);
            if (reads) {
                readSink = readAcc;
            }
            long now = System.nanoTime();
            if (pagesPerSecond > 0) {
                long due = started + done * 1_000_000_000L / pagesPerSecond;
                if (due - now > 20_000) {
                    LockSupport.parkNanos(due - now); // pacing to the dirty rate
                }
            }
            int throttle = throttlePercent;
            if (throttle > 0 && now - sliceStart >= SLICE_NS * (100 - throttle) / 100) {
                LockSupport.parkNanos(SLICE_NS * throttle / 100); // cpu-throttle: sleep our share of the slice
                sliceStart = System.nanoTime();
                started += SLICE_NS * throttle / 100; // a throttled vCPU does not catch up afterwards
            } else if (now - sliceStart >= SLICE_NS) {
                sliceStart = now;
            }
        }
    }

    private static long next(long x) {
        x ^= x << 13;
        x ^= x >>> 7;
        x ^= x << 17;
        return x;
    }

    private void parkForPause() {
        lock.lock();
        try {
            parked++;
            changed.signalAll();
            while (pauseRequested && !stopped) {
                changed.awaitUninterruptibly();
            }
            parked--;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void pause() {
        lock.lock();
        try {
            pauseRequested = true;
            pausing = true;
            // Wake vCPUs sleeping for pacing or throttling: the pause must not wait for their timers.
            vcpus.forEach(LockSupport::unpark);
            // Every running vCPU sees 'pausing' after its current batch of writes and parks.
            while (parked < vcpus.size() && !stopped) {
                changed.awaitUninterruptibly();
            }
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void resume() {
        lock.lock();
        try {
            pauseRequested = false;
            pausing = false;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void throttle(int percent) {
        if (percent < 0 || percent > 99) {
            throw new IllegalArgumentException("throttle " + percent + "% outside 0..99");
        }
        throttlePercent = percent;
    }

    /** @return the current throttle */
    public int throttlePercent() {
        return throttlePercent;
    }

    /** Stops the vCPU threads for good. */
    @Override
    public void close() {
        stopped = true;
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        for (Thread t : vcpus) {
            try {
                t.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
