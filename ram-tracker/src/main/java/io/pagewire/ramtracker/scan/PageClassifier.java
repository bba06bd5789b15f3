package io.pagewire.ramtracker.scan;

import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * Classifies the pages of a region into ordered runs ready for the wire format's frames:
 * {@link RunKind#NORMAL normal pages}, {@link RunKind#ZERO zero runs}, {@link RunKind#BALLOON
 * balloon skip runs}. Adjacent pages of one kind become one run.
 *
 * <p>What is read and what is not:
 * <ol>
 * <li>ballooned pages ({@link BalloonMap}) are skipped a word (64 pages) at a time, never read;</li>
 * <li>pages never populated are found from the kernel's bookkeeping
 *     ({@link GuestRegion#nextPopulatedPage}: {@code SEEK_DATA}/{@code SEEK_HOLE} on a memfd,
 *     {@code PAGEMAP_SCAN} on anonymous memory) and reported as zero runs without being read;</li>
 * <li>only the remaining pages are scanned, with {@link ZeroScanner#best()}.</li>
 * </ol>
 *
 * <p>Ordering: classification reads population and contents when it runs. The caller takes the
 * dirty bits of the pages first ({@link #classifyDirty} does it itself, batch by batch, and asks
 * the kernel about population only after the batch is taken): a write that lands after that is
 * dirty-logged and sent again, so a page is never reported as zero after data reached it
 * unnoticed.
 *
 * <p>Threading: a classifier is used by one thread at a time (it keeps the run being merged and
 * its statistics); use one per sender thread. Nothing is allocated per page or per run.
 */
public final class PageClassifier {

    /** Dirty words taken per batch in {@link #classifyDirty}: 64 words = 4096 pages. */
    static final int BATCH_WORDS = 64;

    private final GuestRegion region;
    private final BalloonMap balloon;
    private final ZeroScanner zero;
    private final MemorySegment memory;
    private final long pageSize;
    private final int pageShift;
    private final long[] taken = new long[BATCH_WORDS];
    private final Stats stats = new Stats();

    // The run being merged, not yet handed to the sink.
    private RunSink sink;
    private RunKind runKind;
    private long runFirst;
    private long runCount;
    private long rejectedAt;

    // What the kernel said about population: pages [knownFrom, knownTo) are populated or not.
    private long knownFrom;
    private long knownTo;
    private boolean knownPopulated;
    /** A populated extent the kernel reported, kept across calls (see learnPopulation). */
    private long populatedFrom;
    private long populatedTo;
    /** How far a population question may look: the end of the range or of the taken batch. */
    private long populationLimit;

    /**
     * @param region the region
     * @param balloon its balloon map, or null when nothing is ballooned
     */
    public PageClassifier(GuestRegion region, BalloonMap balloon) {
        this(region, balloon, ZeroScanner.best());
    }

    /**
     * @param region the region
     * @param balloon its balloon map, or null when nothing is ballooned
     * @param zero the zero scanner to use
     */
    public PageClassifier(GuestRegion region, BalloonMap balloon, ZeroScanner zero) {
        this.region = Objects.requireNonNull(region, "region");
        this.balloon = balloon;
        this.zero = Objects.requireNonNull(zero, "zero");
        if (balloon != null && balloon.pageCount() != region.pageCount()) {
            throw new IllegalArgumentException("balloon map covers " + balloon.pageCount() + " pages but " + region + " has "
                    + region.pageCount());
        }
        this.memory = region.memory();
        this.pageSize = region.pageSize();
        this.pageShift = region.pageShift();
    }

    /** @return the region */
    public GuestRegion region() {
        return region;
    }

    /** @return counters since creation or the last {@link Stats#reset()} */
    public Stats stats() {
        return stats;
    }

    /**
     * Classifies pages {@code [firstPage, firstPage + count)}: the runs handed to {@code sink}
     * cover the range exactly, in order.
     *
     * @param firstPage first page
     * @param count pages
     * @param sink receives the runs
     * @return {@code firstPage + count} when done; else the first page of the run the sink
     *         refused (resume from there)
     */
    public long classify(long firstPage, long count, RunSink sink) {
        checkRange(firstPage, count);
        begin(sink);
        long end = firstPage + count;
        forget(end);
        if (!classifyRange(firstPage, end) || !flush()) {
            return rejectedAt;
        }
        return end;
    }

    /**
     * Classifies the dirty pages of {@code [firstPage, firstPage + count)}, taking (atomically
     * clearing) their bits in {@code dirty} before reading them. Runs cover dirty pages only, in
     * order. When the sink refuses a run, every page taken but not handed over is marked dirty
     * again.
     *
     * @param dirty the region's dirty bitmap (e.g. the migration client's)
     * @param firstPage first page
     * @param count pages
     * @param sink receives the runs
     * @return {@code firstPage + count} when done; else the first page of the run the sink
     *         refused (resume from there)
     */
    public long classifyDirty(DirtyBitmap dirty, long firstPage, long count, RunSink sink) {
        checkRange(firstPage, count);
        if (dirty.pageCount() != region.pageCount()) {
            throw new IllegalArgumentException("dirty bitmap covers " + dirty.pageCount() + " pages but " + region + " has "
                    + region.pageCount());
        }
        begin(sink);
        long end = firstPage + count;
        long lastWord = (end - 1) >>> 6;
        long position = firstPage;
        while (position < end) {
            long a = dirty.nextDirty(position, end);
            if (a == end) {
                break;
            }
            // Take a batch of words first, then learn population: the kernel is asked only about
            // pages already taken, so what it says cannot predate a write we would miss.
            long w0 = a >>> 6;
            int words = (int) Math.min(BATCH_WORDS, lastWord - w0 + 1);
            for (int k = 0; k < words; k++) {
                long w = w0 + k;
                long mask = (k == 0 ? -1L << a : -1L) & (w == lastWord ? -1L >>> (63 - ((end - 1) & 63)) : -1L);
                taken[k] = dirty.take(w, mask);
            }
            forget(Math.min(end, (w0 + words) << 6));
            for (int k = 0; k < words; k++) {
                long t = taken[k];
                long base = (w0 + k) << 6;
                while (t != 0) {
                    int s = Long.numberOfTrailingZeros(t);
                    int len = Long.numberOfTrailingZeros(~(t >>> s)); // ones from bit s on (64 - s when all)
                    if (!classifyRange(base + s, base + s + len)) {
                        remarkAfterRejection(dirty, w0, words);
                        return rejectedAt;
                    }
                    t = len + s >= 64 ? 0 : t & ~(((1L << len) - 1) << s);
                }
            }
            position = (w0 + words) << 6;
        }
        if (!flush()) {
            remarkAfterRejection(dirty, -1, 0);
            return rejectedAt;
        }
        return end;
    }

    /**
     * The run starting at {@code rejectedAt} was refused: its pages (all taken, since runs hold
     * dirty pages only) and everything taken in the current batch after it go back to dirty.
     */
    private void remarkAfterRejection(DirtyBitmap dirty, long w0, int words) {
        dirty.markRangeAtomic(runFirst, runCount);
        long after = runFirst + runCount;
        for (int k = 0; k < words; k++) {
            long w = w0 + k;
            long keep = (w << 6) >= after ? -1L : (w << 6) + 64 <= after ? 0 : -1L << after;
            long bits = taken[k] & keep;
            if (bits != 0) {
                dirty.orWordAtomic(w, bits);
            }
        }
        runCount = 0;
    }

    private void begin(RunSink newSink) {
        this.sink = Objects.requireNonNull(newSink, "sink");
        this.runCount = 0;
        this.rejectedAt = -1;
    }

    /** Classifies {@code [from, to)}; false when the sink refused a run. */
    private boolean classifyRange(long from, long to) {
        long p = from;
        while (p < to) {
            long limit = to;
            if (balloon != null) {
                if (balloon.isBallooned(p)) {
                    long q = balloon.nextNotBallooned(p, to);
                    stats.balloonPages += q - p;
                    if (!add(RunKind.BALLOON, p, q - p)) {
                        return false;
                    }
                    p = q;
                    continue;
                }
                limit = balloon.nextBallooned(p, to);
            }
            if (p >= knownTo || p < knownFrom) {
                learnPopulation(p, Math.max(limit, populationLimit));
            }
            long q = Math.min(limit, knownTo);
            if (!knownPopulated) {
                stats.unpopulatedPages += q - p;
                if (!add(RunKind.ZERO, p, q - p)) {
                    return false;
                }
            } else if (!scan(p, q)) {
                return false;
            }
            p = q;
        }
        return true;
    }

    /** Asks the kernel whether page {@code p} was populated, and how far that holds (up to {@code limit}). */
    private void learnPopulation(long p, long limit) {
        knownFrom = p;
        // "Populated" only ever stays true for our purposes: a page taken for populated is read and
        // zero-scanned, so a page discarded since is still classified right (as zero). So a
        // populated extent the kernel reported is kept across calls: SEEK_HOLE cannot be bounded
        // and costs the length of the extent, which per dirty batch would make a round quadratic.
        if (p >= populatedFrom && p < populatedTo) {
            knownPopulated = true;
            knownTo = Math.min(limit, populatedTo);
            return;
        }
        long populated = region.nextPopulatedPage(p, limit);
        if (populated > p) {
            knownPopulated = false;
            knownTo = populated;
        } else {
            knownPopulated = true;
            long end = region.nextUnpopulatedPage(p, region.pageCount());
            populatedFrom = p;
            populatedTo = end;
            knownTo = Math.min(limit, end);
        }
        stats.populationQueries++;
    }

    /** Drops what the kernel said; later questions may look up to {@code limit}. */
    private void forget(long limit) {
        knownFrom = 0;
        knownTo = 0;
        populationLimit = limit;
    }

    private boolean scan(long from, long to) {
        for (long p = from; p < to; p++) {
            boolean isZero = zero.isZero(memory, p << pageShift, pageSize);
            stats.pagesRead++;
            if (isZero) {
                stats.zeroPagesRead++;
            } else {
                stats.normalPages++;
            }
            if (!add(isZero ? RunKind.ZERO : RunKind.NORMAL, p, 1)) {
                return false;
            }
        }
        return true;
    }

    /** Merges into the current run, or hands the current run to the sink and starts a new one. */
    private boolean add(RunKind kind, long first, long count) {
        if (runCount > 0) {
            if (kind == runKind && runFirst + runCount == first) {
                runCount += count;
                return true;
            }
            if (!sink.run(runKind, runFirst, runCount)) {
                rejectedAt = runFirst;
                return false;
            }
            stats.runs++;
        }
        runKind = kind;
        runFirst = first;
        runCount = count;
        return true;
    }

    private boolean flush() {
        if (runCount > 0) {
            if (!sink.run(runKind, runFirst, runCount)) {
                rejectedAt = runFirst;
                return false;
            }
            stats.runs++;
            runCount = 0;
        }
        return true;
    }

    private void checkRange(long firstPage, long count) {
        if (firstPage < 0 || count < 0 || firstPage > region.pageCount() - count) {
            throw new IndexOutOfBoundsException(region + ": pages [" + firstPage + ", +" + count + ") outside [0, " + region.pageCount() + ")");
        }
    }

    /** Counters of one classifier (plain fields: read them on the classifying thread). */
    public static final class Stats {
        long pagesRead;
        long zeroPagesRead;
        long normalPages;
        long unpopulatedPages;
        long balloonPages;
        long populationQueries;
        long runs;

        Stats() {
        }

        /** @return pages whose contents were read */
        public long pagesRead() {
            return pagesRead;
        }

        /** @return pages read and found zero */
        public long zeroPagesRead() {
            return zeroPagesRead;
        }

        /** @return pages read and found non-zero */
        public long normalPages() {
            return normalPages;
        }

        /** @return pages known zero because never populated (not read) */
        public long unpopulatedPages() {
            return unpopulatedPages;
        }

        /** @return ballooned pages skipped (not read) */
        public long balloonPages() {
            return balloonPages;
        }

        /** @return questions asked to the kernel about population */
        public long populationQueries() {
            return populationQueries;
        }

        /** @return runs handed to sinks */
        public long runs() {
            return runs;
        }

        /** Sets every counter to 0. */
        public void reset() {
            pagesRead = zeroPagesRead = normalPages = unpopulatedPages = balloonPages = populationQueries = runs = 0;
        }

        @Override
        public String toString() {
            return "read " + pagesRead + " (zero " + zeroPagesRead + ", normal " + normalPages + "), unpopulated " + unpopulatedPages
                    + ", ballooned " + balloonPages + ", runs " + runs + ", population queries " + populationQueries;
        }
    }
}
