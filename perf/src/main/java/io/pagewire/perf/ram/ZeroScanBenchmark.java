package io.pagewire.perf.ram;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.scan.ZeroScanner;
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
import java.util.concurrent.TimeUnit;

/**
 * Issue 3 target: zero scan of a zero-filled 1 GiB region at 30 GB/s or more on one core.
 * The region is anonymous memory, populated (zero-filled) before measuring, with transparent
 * huge pages unless {@code -p thp=false}. Score = ms per GiB; GB/s = 1073.7 / score.
 * <pre>
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     org.openjdk.jmh.Main 'io.pagewire.perf.ram.ZeroScanBenchmark' -f 1 -wi 3 -i 5
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector"})
public class ZeroScanBenchmark {
    static final long GIB = 1L << 30;
    static final long PAGE = 4096;

    /** vector (Vector API), scalar (long loop), mismatch (MemorySegment.mismatch). */
    @Param({"vector", "scalar", "mismatch"})
    String scanner;

    @Param({"true"})
    boolean thp;

    private GuestRam ram;
    private MemorySegment memory;
    private ZeroScanner zero;

    @Setup(Level.Trial)
    public void setup() {
        zero = switch (scanner) {
            case "vector" -> ZeroScanner.vector().orElseThrow(() -> new IllegalStateException(ZeroScanner.vectorUnavailabilityCause()));
            case "scalar" -> ZeroScanner.scalar();
            case "mismatch" -> ZeroScanner.mismatch();
            default -> throw new IllegalArgumentException("scanner " + scanner);
        };
        ram = GuestRam.create();
        GuestRegion r = ram.open(RegionSpec.anonymous("zero", GIB).hugePages(thp));
        r.populate(0, r.pageCount());
        memory = r.memory();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        ram.close();
    }

    /** @return zero pages found (all of them) */
    @Benchmark
    public long scanOneGiB() {
        long zeros = 0;
        for (long off = 0; off < GIB; off += PAGE) {
            if (zero.isZero(memory, off, PAGE)) {
                zeros++;
            }
        }
        if (zeros != GIB / PAGE) {
            throw new IllegalStateException("expected a zero-filled region, found " + (GIB / PAGE - zeros) + " non-zero pages");
        }
        return zeros;
    }
}
