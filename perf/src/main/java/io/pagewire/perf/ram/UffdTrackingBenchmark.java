package io.pagewire.perf.ram;

import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.dirty.UffdWriteTracker;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * Issue 3 targets: userfaultfd tracking of a 1 GiB memfd region; start (write-protect all) in
 * 25 ms or less, collect-and-re-protect with 10% of pages written in 10 ms or less. The region
 * is populated first ({@code populated=true}: guest RAM in use, the expensive case) or left
 * unpopulated. The writes happen in the untimed per-invocation setup.
 * <pre>
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     org.openjdk.jmh.Main 'io.pagewire.perf.ram.UffdTrackingBenchmark' -f 1 -wi 5 -i 10
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 10, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector"})
public class UffdTrackingBenchmark {
    static final long GIB = 1L << 30;

    @Param({"MEMFD"})
    String backing;

    @Param({"true"})
    boolean populated;

    private GuestRam ram;
    private GuestRegion region;
    private UffdWriteTracker tracker;
    private DirtyBitmap bitmap;
    private long[] tenPercent;

    @Setup(Level.Trial)
    public void setup() {
        ram = GuestRam.create();
        RegionSpec spec = Backing.valueOf(backing) == Backing.MEMFD ? RegionSpec.memfd("pc.ram", GIB) : RegionSpec.anonymous("pc.ram", GIB);
        region = ram.open(spec);
        if (populated) {
            region.populate(0, region.pageCount());
        }
        tracker = UffdWriteTracker.open(region);
        bitmap = DirtyBitmap.allocate(region.pageCount(), ram.arena());
        SplittableRandom rnd = new SplittableRandom(3);
        tenPercent = rnd.longs(region.pageCount() / 10, 0, region.pageCount()).toArray();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        tracker.close();
        ram.close();
    }

    /** Start state for {@link #start()}: not tracking. */
    @State(Scope.Thread)
    public static class Stopped {
        @Setup(Level.Invocation)
        public void stop(UffdTrackingBenchmark b) {
            b.tracker.stop();
        }
    }

    /** Start state for {@link #collectTenPercentWritten()}: tracking, 10% of pages written since the last collect. */
    @State(Scope.Thread)
    public static class TenPercentWritten {
        @Setup(Level.Invocation)
        public void write(UffdTrackingBenchmark b) {
            if (!b.tracker.isTracking()) {
                b.tracker.start();
            }
            b.bitmap.clearAll();
            MemorySegment m = b.region.memory();
            for (long p : b.tenPercent) {
                long off = p << 12;
                m.set(JAVA_BYTE, off, (byte) (m.get(JAVA_BYTE, off) + 1));
            }
        }
    }

    /** Register and write-protect the whole region. */
    @Benchmark
    public void start(Stopped state) {
        tracker.start();
    }

    /** @return pages reported (about 9.5% of the region: 10% draws with repeats) */
    @Benchmark
    public long collectTenPercentWritten(TenPercentWritten state) {
        long n = tracker.collect(bitmap);
        if (n < region.pageCount() / 11) {
            throw new IllegalStateException("collected only " + n + " pages");
        }
        return n;
    }
}
