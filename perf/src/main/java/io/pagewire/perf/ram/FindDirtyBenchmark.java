package io.pagewire.perf.ram;

import io.pagewire.ramtracker.bitmap.DirtyBitmap;
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

import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Issue 3 target: finding every dirty page of a 384 MiB bitmap (a 12 TiB guest of 4 KiB pages)
 * at 1% density in 100 ms or less (cloud-hypervisor reports 382 ms). Two ways: the batch cursor
 * (the recommended one) and one {@code nextDirty} call per page.
 * <pre>
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     org.openjdk.jmh.Main 'io.pagewire.perf.ram.FindDirtyBenchmark' -f 1 -wi 3 -i 5
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-modules=jdk.incubator.vector"})
public class FindDirtyBenchmark {
    /** 384 MiB of bitmap. */
    static final long PAGES = 384L * 1024 * 1024 * 8;

    private Arena arena;
    private DirtyBitmap bitmap;
    private DirtyBitmap.Cursor cursor;
    /** Pages per cursor batch (a {@code long[]}); try {@code -p batchPages=256,1024,4096}. */
    @Param({"4096"})
    int batchPages;

    private long[] batch;
    private long expected;

    @Setup(Level.Trial)
    public void setup() {
        arena = Arena.ofShared();
        bitmap = DirtyBitmap.allocate(PAGES, arena);
        // 1% of pages, uniformly at random: geometric gaps between dirty pages.
        SplittableRandom rnd = new SplittableRandom(7);
        double logKeep = Math.log(0.99);
        long p = (long) (Math.log(1 - rnd.nextDouble()) / logKeep);
        while (p < PAGES) {
            bitmap.mark(p);
            expected++;
            p += 1 + (long) (Math.log(1 - rnd.nextDouble()) / logKeep);
        }
        cursor = bitmap.cursor();
        batch = new long[batchPages];
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    /** @return the last page of each batch, summed: the find alone, the consumer does almost nothing */
    @Benchmark
    public long cursorBatches() {
        cursor.reset(0, PAGES);
        long sum = 0;
        long found = 0;
        int n;
        while ((n = cursor.next(batch)) > 0) {
            sum += batch[n - 1];
            found += n;
        }
        check(found);
        return sum;
    }

    /** @return sum of every dirty page index: the find plus a consumer that reads each index */
    @Benchmark
    public long cursorBatchesSumAll() {
        cursor.reset(0, PAGES);
        long sum = 0;
        long found = 0;
        int n;
        while ((n = cursor.next(batch)) > 0) {
            for (int i = 0; i < n; i++) {
                sum += batch[i];
            }
            found += n;
        }
        check(found);
        return sum;
    }

    /** @return sum of the dirty page indices */
    @Benchmark
    public long nextDirtyPerPage() {
        long sum = 0;
        long found = 0;
        for (long p = bitmap.nextDirty(0, PAGES); p < PAGES; p = bitmap.nextDirty(p + 1, PAGES)) {
            sum += p;
            found++;
        }
        check(found);
        return sum;
    }

    private void check(long found) {
        if (found != expected) {
            throw new IllegalStateException("found " + found + " dirty pages, marked " + expected);
        }
    }
}
