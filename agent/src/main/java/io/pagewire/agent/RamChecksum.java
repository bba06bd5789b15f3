package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;

import java.lang.foreign.Arena;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;
import java.util.zip.CRC32C;

/**
 * The CRC32C of every region of guest RAM (each region's bytes, in order), computed where it is
 * cheap: in {@link #CHUNK_BYTES} chunks on a pool of threads, each chunk walking the region's
 * population from the kernel's bookkeeping ({@code SEEK_DATA}/{@code SEEK_HOLE} on a memfd,
 * {@code PAGEMAP_SCAN} on anonymous memory). A run of never-populated pages reads as zeros, so its
 * CRC is computed ({@link Checksums#appendZeros}) without touching it (reading a hole of a memfd
 * would allocate it); populated pages are read. The chunk CRCs are combined in order
 * ({@link Checksums#combine}), so the result does not depend on how the work was split, and both
 * sides of a migration compute the same value whatever their backing.
 *
 * <p>Chunks can be started early, one at a time ({@link #submit(int, long)}: the destination
 * checksums chunks the final round does not write while that round still arrives), and the rest
 * later ({@link #submitAll()}).
 *
 * <h2>Threading</h2>
 * {@code submit*} from any thread. Each chunk's CRC is written by the one task that computes it,
 * before that task decrements {@code remaining}; the task that brings it to zero (a volatile
 * read-modify-write, so it sees every other task's write) combines them and completes
 * {@link #result()}. Memory must not change while a chunk is read, and must be readable from
 * Java: never userfaultfd-registered memory (a fault in Java code can stall the JVM at a safepoint).
 */
final class RamChecksum implements AutoCloseable {
    /** Chunk size: one task, and the granularity of the destination's early start (verify-final). */
    static final long CHUNK_BYTES = 64L << 20;
    /** Read at most this much between progress updates and stop checks. */
    private static final long PIECE_BYTES = 8L << 20;

    private final List<GuestRegion> regions;
    private final Population[] population;
    private final long[][] chunkCrcs;
    private final boolean[][] submitted; // guarded by this
    private final AtomicLong remaining = new AtomicLong();
    private final AtomicLong doneBytes = new AtomicLong();
    private final AtomicLong readBytes = new AtomicLong();
    private final CompletableFuture<long[]> result = new CompletableFuture<>();
    private final ThreadPoolExecutor pool;
    private final long totalBytes;
    private volatile boolean stopped;

    /**
     * @param regions the regions, in wire order
     * @param threads threads that read (a pool of its own, closed by {@link #close()})
     * @param name thread name prefix
     */
    RamChecksum(List<GuestRegion> regions, int threads, String name) {
        this.regions = List.copyOf(regions);
        this.chunkCrcs = new long[regions.size()][];
        this.population = new Population[regions.size()];
        this.submitted = new boolean[regions.size()][];
        long total = 0;
        long chunks = 0;
        for (int r = 0; r < regions.size(); r++) {
            long n = chunks(regions.get(r));
            if (n > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("region '" + regions.get(r).name() + "' has " + n + " checksum chunks; at most "
                        + Integer.MAX_VALUE);
            }
            chunkCrcs[r] = new long[(int) n];
            population[r] = new Population(regions.get(r));
            submitted[r] = new boolean[(int) n];
            chunks += n;
            total += regions.get(r).sizeBytes();
        }
        this.totalBytes = total;
        remaining.set(chunks);
        if (chunks == 0) {
            result.complete(new long[0]);
        }
        // The queue holds at most one task per chunk: bounded by the layout.
        this.pool = new ThreadPoolExecutor(threads, threads, 0, TimeUnit.NANOSECONDS, new LinkedBlockingQueue<>(),
                Thread.ofPlatform().daemon().name(name, 0).factory());
    }

    /**
     * Sets how many threads read from now on (the destination reads with one while the final
     * round still arrives, with all once the migration completed).
     */
    void threads(int n) {
        if (n > pool.getMaximumPoolSize()) {
            pool.setMaximumPoolSize(n);
            pool.setCorePoolSize(n);
        } else {
            pool.setCorePoolSize(n);
            pool.setMaximumPoolSize(n);
        }
    }

    /** @return pages per checksum chunk of a region */
    static long chunkPages(GuestRegion r) {
        return Math.max(1, CHUNK_BYTES / r.pageSize());
    }

    /** @return checksum chunks of a region */
    static long chunks(GuestRegion r) {
        return (r.pageCount() + chunkPages(r) - 1) / chunkPages(r);
    }

    /** Starts checksumming one chunk, unless it was started already. */
    void submit(int region, long chunk) {
        synchronized (this) {
            if (submitted[region][(int) chunk]) {
                return;
            }
            submitted[region][(int) chunk] = true;
        }
        try {
            pool.execute(() -> run(region, (int) chunk));
        } catch (RejectedExecutionException e) {
            if (!stopped) {
                throw e;
            }
            // closed: the result has failed already, nothing more is read
        }
    }

    /** Starts every chunk not started yet. */
    void submitAll() {
        for (int r = 0; r < regions.size(); r++) {
            for (long c = 0; c < chunkCrcs[r].length; c++) {
                submit(r, c);
            }
        }
    }

    /** @return whether any chunk was started */
    synchronized boolean started() {
        for (boolean[] s : submitted) {
            for (boolean b : s) {
                if (b) {
                    return true;
                }
            }
        }
        return false;
    }

    /** @return the CRC32C of each region once every chunk is done; failed with what failed */
    CompletableFuture<long[]> result() {
        return result;
    }

    /**
     * Waits for the result, reporting progress every {@code intervalNs} meanwhile.
     *
     * @param progress called with {@link #doneBytes()} on the waiting thread; what it throws ends the wait
     * @throws ExecutionException when checksumming failed
     */
    long[] await(long intervalNs, LongConsumer progress) throws InterruptedException, ExecutionException {
        while (true) {
            try {
                return result.get(intervalNs, TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                progress.accept(doneBytes.get());
            }
        }
    }

    /** @return bytes accounted for so far (read, or known zero) */
    long doneBytes() {
        return doneBytes.get();
    }

    /** @return bytes read so far (the rest of what is done was never populated) */
    long readBytes() {
        return readBytes.get();
    }

    /** @return bytes of all regions */
    long totalBytes() {
        return totalBytes;
    }

    private void run(int region, int chunk) {
        try {
            GuestRegion r = regions.get(region);
            long first = chunk * chunkPages(r);
            chunkCrcs[region][chunk] = crc(r, population[region], first, Math.min(r.pageCount(), first + chunkPages(r)));
            if (remaining.decrementAndGet() == 0) {
                result.complete(combine());
            }
        } catch (RuntimeException | Error e) {
            stopped = true;
            result.completeExceptionally(e);
        }
    }

    /** @return the CRC32C of pages [first, end) of a region: never-populated runs computed, the rest read */
    private long crc(GuestRegion r, Population populated, long first, long end) {
        populated.discover(end);
        int shift = r.pageShift();
        long piecePages = Math.max(1, PIECE_BYTES >>> shift);
        CRC32C piece = new CRC32C();
        long crc = 0;
        long p = first;
        while (p < end) {
            long data = populated.next(p, end);
            if (data > p) {
                long zeroBytes = (data - p) << shift;
                crc = Checksums.appendZeros(crc, zeroBytes);
                doneBytes.addAndGet(zeroBytes);
                p = data;
                continue;
            }
            // p is populated: read up to the next hole (at least this page), a piece at a time. (A zero
            // scan before the CRC pays only in a warm JVM: cold, it costs more than it saves.)
            long hole = Math.max(p + 1, populated.nextHole(p, end));
            while (p < hole) {
                if (stopped) {
                    throw new IllegalStateException("checksumming region '" + r.name() + "' stopped at page " + p);
                }
                long n = Math.min(piecePages, hole - p);
                piece.reset();
                Checksums.update(piece, r.pages(p, n));
                crc = Checksums.combine(crc, piece.getValue(), n << shift);
                doneBytes.addAndGet(n << shift);
                readBytes.addAndGet(n << shift);
                p += n;
            }
        }
        return crc;
    }

    /**
     * Which pages of a region were ever populated, found from the kernel once, in page order, and
     * shared by the chunk tasks. Asking the kernel per chunk would be quadratic on a memfd:
     * {@code SEEK_HOLE} cannot be bounded and walks every page up to the next hole, to the end of
     * the region when it is fully populated. In page order, each populated extent is walked once.
     */
    private static final class Population {
        private final GuestRegion region;
        private final DirtyBitmap populated;
        private long knownTo; // pages [0, knownTo) are known; guarded by this

        Population(GuestRegion region) {
            this.region = region;
            // 1 bit per page (32 MiB per TiB of RAM), mapped lazily; freed with this object.
            this.populated = DirtyBitmap.allocate(region.pageCount(), Arena.ofAuto());
        }

        /**
         * Learns the population up to at least page {@code to} (a thread that needs a range
         * another is discovering waits for it). Marks are made before {@code knownTo} moves and
         * read after it was seen under the same lock.
         */
        synchronized void discover(long to) {
            long n = region.pageCount();
            while (knownTo < to) {
                long data = region.nextPopulatedPage(knownTo, n);
                if (data >= n) {
                    knownTo = n;
                    break;
                }
                long hole = Math.max(data + 1, region.nextUnpopulatedPage(data, n));
                populated.markRangeAtomic(data, hole - data);
                knownTo = hole;
            }
        }

        /** @return the first populated page in [from, to), or to; [from, to) must be discovered */
        long next(long from, long to) {
            return populated.nextDirty(from, to);
        }

        /** @return the first never-populated page in [from, to), or to; [from, to) must be discovered */
        long nextHole(long from, long to) {
            return populated.nextClean(from, to);
        }
    }

    private long[] combine() {
        long[] crcs = new long[regions.size()];
        for (int r = 0; r < regions.size(); r++) {
            GuestRegion region = regions.get(r);
            long chunkBytes = chunkPages(region) << region.pageShift();
            long crc = 0;
            for (int c = 0; c < chunkCrcs[r].length; c++) {
                long bytes = Math.min(chunkBytes, region.sizeBytes() - c * chunkBytes);
                crc = Checksums.combine(crc, chunkCrcs[r][c], bytes);
            }
            crcs[r] = crc;
        }
        return crcs;
    }

    /**
     * Stops: chunks not begun are dropped, running ones end at their next piece; returns when no
     * thread reads the memory any more (so that it may be unmapped).
     */
    @Override
    public void close() {
        stopped = true;
        result.completeExceptionally(new IllegalStateException("checksumming stopped"));
        pool.shutdownNow();
        boolean interrupted = false;
        while (true) {
            try {
                if (pool.awaitTermination(1, TimeUnit.MINUTES)) {
                    break;
                }
                throw new IllegalStateException("checksum threads still read guest RAM one minute after being stopped");
            } catch (InterruptedException e) {
                interrupted = true; // the memory may be unmapped after this returns: wait regardless
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
