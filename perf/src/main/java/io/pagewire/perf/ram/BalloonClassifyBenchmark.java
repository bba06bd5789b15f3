package io.pagewire.perf.ram;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.scan.BalloonMap;
import io.pagewire.ramtracker.scan.PageClassifier;
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

import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Issue 3 target, seed 002's case: a 16 GiB idle guest with 12 GiB ballooned out. Classifying it
 * with the 12 GiB ballooned must cost at most 1% of classifying it with nothing ballooned.
 *
 * <p>Layout (of {@code gib} GiB; 16 by default): the first 3/4 were used by the guest before it
 * gave them back, and are populated (zero-filled, as a guest that zeroes freed memory leaves
 * them: the worst case, every page must be read to learn it is zero); the next 1/16 holds data;
 * the last 3/16 were never written. With {@code ballooned=true} the first 3/4 are in the
 * {@link BalloonMap}. Anonymous memory with transparent huge pages, so that populating 12 GiB
 * takes a second, not minutes. Needs {@code gib * 13/16} GiB of free memory; scale with
 * {@code -p gib=4} on a smaller machine (the ratio is what counts).
 * <pre>
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     org.openjdk.jmh.Main 'io.pagewire.perf.ram.BalloonClassifyBenchmark' -f 1 -wi 2 -i 5
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector"})
public class BalloonClassifyBenchmark {

    @Param({"16"})
    int gib;

    @Param({"false", "true"})
    boolean ballooned;

    private GuestRam ram;
    private PageClassifier classifier;
    private final ClassifyBenchmark.Counts counts = new ClassifyBenchmark.Counts();
    private long pages;
    private long balloonPages;
    private long dataPages;

    @Setup(Level.Trial)
    public void setup() {
        ram = GuestRam.create();
        GuestRegion r = ram.open(RegionSpec.anonymous("pc.ram", (long) gib << 30).hugePages(true));
        pages = r.pageCount();
        balloonPages = pages / 4 * 3;
        dataPages = pages / 16;
        r.populate(0, balloonPages + dataPages);
        for (long p = balloonPages; p < balloonPages + dataPages; p++) {
            r.page(p).set(JAVA_LONG, 0, p | 1);
        }
        BalloonMap balloon = new BalloonMap(pages, ram.arena());
        if (ballooned) {
            balloon.mark(0, balloonPages);
        }
        classifier = new PageClassifier(r, balloon);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        ram.close();
    }

    /** @return runs emitted */
    @Benchmark
    public long classifyLayout() {
        counts.reset();
        classifier.classify(0, pages, counts);
        if (counts.normal != dataPages || counts.balloon != (ballooned ? balloonPages : 0)) {
            throw new IllegalStateException("unexpected classification: normal " + counts.normal + ", balloon " + counts.balloon);
        }
        return counts.runs;
    }
}
