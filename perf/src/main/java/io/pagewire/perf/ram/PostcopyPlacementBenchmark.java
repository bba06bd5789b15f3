package io.pagewire.perf.ram;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.postcopy.PostcopyRegion;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * Issue 5: what placing a received page costs at a postcopy destination, per page, in the three
 * ways {@link PostcopyRegion} can do it (userfaultfd registered, as during postcopy):
 * <ul>
 *   <li>{@code MISSING_COPY}: anonymous memory, {@code UFFDIO_COPY} from the receive buffer (the
 *       kernel allocates the page and fills it);</li>
 *   <li>{@code MINOR_CONTINUE}: memfd, the page written through the second mapping (the page
 *       cache allocates and zeroes it first), then {@code UFFDIO_CONTINUE};</li>
 *   <li>{@code MINOR_CONTINUE_PREALLOCATED}: the same over a page cache populated beforehand (a
 *       pre-allocated destination, or pages that arrived in precopy and went stale).</li>
 * </ul>
 * Pages are placed in runs of {@code run} pages, in order, as the background push delivers them;
 * {@code run=1} is the urgent lane's answer to one fault.
 * <pre>
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     org.openjdk.jmh.Main 'io.pagewire.perf.ram.PostcopyPlacementBenchmark' -f 1 -wi 3 -i 5
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector"})
public class PostcopyPlacementBenchmark {
    static final long BYTES = 64L << 20;
    static final int PAGES = (int) (BYTES / 4096);

    @Param({"MISSING_COPY", "MINOR_CONTINUE", "MINOR_CONTINUE_PREALLOCATED"})
    String way;

    @Param({"64", "1"})
    int run;

    private MemorySegment data;
    private Arena arena;
    private GuestRam ram;
    private PostcopyRegion region;

    @Setup(Level.Trial)
    public void data() {
        arena = Arena.ofShared();
        data = arena.allocate(BYTES, 4096);
        for (long i = 0; i < BYTES; i += 8) {
            data.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, i, i * 0x9E3779B97F4A7C15L);
        }
    }

    @TearDown(Level.Trial)
    public void freeData() {
        arena.close();
    }

    /** A fresh region, registered with userfaultfd, nothing placed (untimed). */
    @Setup(Level.Invocation)
    public void region() {
        ram = GuestRam.create();
        GuestRegion r = ram.open(way.equals("MISSING_COPY") ? RegionSpec.anonymous("pc.ram", BYTES).hugePages(false)
                : RegionSpec.memfd("pc.ram", BYTES));
        region = PostcopyRegion.open(r);
        if (way.equals("MINOR_CONTINUE_PREALLOCATED")) {
            Mappings.populateWrite(region.alias());
        }
        region.start();
    }

    @TearDown(Level.Invocation)
    public void closeRegion() {
        region.close();
        ram.close();
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public long placePerPage() {
        long placed = 0;
        for (int p = 0; p < PAGES; p += run) {
            placed += region.place(p, run, data.asSlice((long) p * 4096, (long) run * 4096), null);
        }
        if (placed != PAGES) {
            throw new IllegalStateException("placed " + placed + " of " + PAGES + " pages");
        }
        return placed;
    }
}
