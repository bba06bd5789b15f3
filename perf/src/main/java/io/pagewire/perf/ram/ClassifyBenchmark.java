package io.pagewire.perf.ram;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.scan.PageClassifier;
import io.pagewire.ramtracker.scan.RunKind;
import io.pagewire.ramtracker.scan.RunSink;
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

/**
 * Issue 3 target: classifying a 4 GiB region that was never written in 10 ms or less. The
 * kernel says which pages were never populated ({@code SEEK_DATA} on the memfd,
 * {@code PAGEMAP_SCAN} on anonymous memory), so nothing is read.
 * <pre>
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     org.openjdk.jmh.Main 'io.pagewire.perf.ram.ClassifyBenchmark' -f 1 -wi 3 -i 5
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector"})
public class ClassifyBenchmark {

    @Param({"MEMFD", "ANONYMOUS"})
    String backing;

    @Param({"4"})
    int gib;

    private GuestRam ram;
    private PageClassifier classifier;
    private final Counts counts = new Counts();

    /** Counts pages per kind: no allocation per run. */
    static final class Counts implements RunSink {
        long normal;
        long zero;
        long balloon;
        long runs;

        void reset() {
            normal = zero = balloon = runs = 0;
        }

        @Override
        public boolean run(RunKind kind, long firstPage, long count) {
            runs++;
            switch (kind) {
                case NORMAL -> normal += count;
                case ZERO -> zero += count;
                case BALLOON -> balloon += count;
            }
            return true;
        }
    }

    @Setup(Level.Trial)
    public void setup() {
        ram = GuestRam.create();
        long bytes = (long) gib << 30;
        GuestRegion r = ram.open("MEMFD".equals(backing) ? RegionSpec.memfd("pc.ram", bytes) : RegionSpec.anonymous("pc.ram", bytes));
        classifier = new PageClassifier(r, null);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        ram.close();
    }

    /** @return runs (1: one zero run) */
    @Benchmark
    public long classifyNeverWritten() {
        counts.reset();
        GuestRegion r = classifier.region();
        classifier.classify(0, r.pageCount(), counts);
        if (counts.zero != r.pageCount()) {
            throw new IllegalStateException("expected all " + r.pageCount() + " pages zero, got " + counts.zero);
        }
        return counts.runs;
    }
}
