package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.ramtracker.scan.BalloonMap;
import io.pagewire.ramtracker.scan.PageClassifier;
import io.pagewire.ramtracker.scan.RunKind;
import io.pagewire.ramtracker.scan.RunSink;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Lane;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Sends one round of pages in QEMU multifd's shape: one worker per background channel
 * ({@link Connection#backgroundChannel}), each claiming slices of the RAM in turn, classifying
 * them (normal, zero, ballooned) and handing the runs to its own channel. No lock and no queue is
 * shared between channels: a round is as fast as the channels and the classification together,
 * not as the one thread that used to take every run under a global lock.
 * <pre>
 *   RAM:   | slice 0 | slice 1 | slice 2 | slice 3 | ...      (claimed in turn, CLAIM_PAGES at most)
 *             |          |         |
 *   worker 0: classify -> offer on channel 0 -> sender 0 -> socket 0
 *   worker 1: classify -> offer on channel 1 -> sender 1 -> socket 1
 * </pre>
 *
 * <h2>Back pressure, end to end</h2>
 * A worker classifies {@link #STEP_PAGES} at a time and offers each run with
 * {@link Lane#offerPages}; when its channel is full ({@link Lane#BACK_PRESSURED}) the run is
 * refused ({@link RunSink} returns false), the classifier stops there (and, in a dirty round, marks
 * what it took dirty again), the worker waits in {@link Lane#awaitRoom} and classifies again from
 * the refused run. So the scan never runs more than one step ahead of its socket, and memory is
 * bounded by each channel's queue.
 *
 * <h2>Threading</h2>
 * {@link #sendRound} blocks its caller until every worker is done; the caller then ends the round
 * on {@link Connection#background()} (which orders after the workers' offers: it joined them).
 * When there are more workers than channels (more scan threads than channels), the workers of one
 * channel take turns under that channel's lock; with as many workers as channels it is never held
 * by two.
 */
final class RoundSender {
    /** Pages classified per call: runs stay this short, so scanning and sending interleave on a channel. */
    static final long STEP_PAGES = 1024;
    /** Largest slice a worker claims at once (64 MiB of 4 KiB pages): small enough to balance the channels. */
    static final long CLAIM_PAGES = 16384;
    private static final long ALIGN_PAGES = 64; // one dirty-bitmap word: workers never share a word

    private final List<GuestRegion> regions;
    private final Map<String, BalloonMap> balloons;
    private final MigrationStats stats;
    private final int scanThreads;
    private final Runnable checkAlive;
    private final Pacer pacer;

    /**
     * @param maxBandwidthBytesPerSec page data cap (0: none)
     * @param scanThreads classifying workers at least (more when there are more channels)
     * @param checkAlive throws when the migration failed or was cancelled
     */
    RoundSender(List<GuestRegion> regions, Map<String, BalloonMap> balloons, MigrationStats stats, long maxBandwidthBytesPerSec,
                int scanThreads, Runnable checkAlive) {
        this.regions = regions;
        this.balloons = balloons;
        this.stats = stats;
        this.scanThreads = scanThreads;
        this.checkAlive = checkAlive;
        this.pacer = new Pacer(maxBandwidthBytesPerSec);
    }

    /** @return the workers a round over {@code conn} runs on */
    int workers(Connection conn) {
        return Math.max(scanThreads, conn.backgroundChannels());
    }

    /**
     * Classifies and sends one round: every page ({@code bulk}) or the dirty ones, on
     * {@link #workers} threads of {@code pool} (which must be able to run that many at once).
     * Does not end the round.
     *
     * @param shared regions not to send (the destination maps them itself)
     */
    void sendRound(Connection conn, ExecutorService pool, List<DirtyBitmap> bitmaps, Set<Integer> shared, boolean bulk)
            throws InterruptedException {
        int channels = conn.backgroundChannels();
        int workers = workers(conn);
        ReentrantLock[] locks = new ReentrantLock[channels];
        for (int c = 0; c < channels; c++) {
            // A lock only where workers share a channel (a lane has a single producer).
            locks[c] = workers > channels && (workers - c + channels - 1) / channels > 1 ? new ReentrantLock() : null;
        }
        long pages = 0;
        for (int r = 0; r < regions.size(); r++) {
            if (!shared.contains(r)) {
                pages += regions.get(r).pageCount();
            }
        }
        long claim = Math.max(ALIGN_PAGES, Math.min(CLAIM_PAGES, pages / (workers * 8L)) / ALIGN_PAGES * ALIGN_PAGES);
        Claims claims = new Claims(regions.size(), claim);
        List<Future<?>> tasks = new ArrayList<>(workers);
        for (int w = 0; w < workers; w++) {
            int channel = w % channels;
            Lane lane = conn.backgroundChannel(channel);
            ReentrantLock lock = locks[channel];
            tasks.add(pool.submit(() -> {
                work(lane, lock, claims, bitmaps, shared, bulk);
                return null;
            }));
        }
        for (Future<?> f : tasks) {
            try {
                f.get();
            } catch (ExecutionException e) {
                tasks.forEach(t -> t.cancel(true));
                Throwable c = e.getCause();
                if (c instanceof RuntimeException re) {
                    throw re;
                }
                throw new IllegalStateException("page classification failed: " + c, c);
            }
        }
    }

    /** One worker: claims slices until none is left, classifies them and offers the runs to its channel. */
    private void work(Lane lane, ReentrantLock lock, Claims claims, List<DirtyBitmap> bitmaps, Set<Integer> shared, boolean bulk) {
        for (int r = 0; r < regions.size(); r++) {
            if (shared.contains(r)) {
                continue;
            }
            GuestRegion region = regions.get(r);
            PageClassifier classifier = new PageClassifier(region, balloons.get(region.name()));
            ChannelSink sink = new ChannelSink(lane, lock, r, region.pageSize());
            DirtyBitmap dirty = bitmaps.get(r);
            long pages = region.pageCount();
            long from;
            while ((from = claims.next(r)) < pages) {
                long end = Math.min(pages, from + claims.pages);
                long pos = from;
                while (pos < end) {
                    checkAlive.run();
                    long step = Math.min(STEP_PAGES, end - pos);
                    long stop = bulk ? classifier.classify(pos, step, sink) : classifier.classifyDirty(dirty, pos, step, sink);
                    if (stop < pos || stop > pos + step) {
                        throw new IllegalStateException("classification of region '" + region.name() + "' stopped at page " + stop
                                + ", outside [" + pos + ", " + (pos + step) + "]");
                    }
                    if (stop < pos + step) {
                        sink.awaitRoom(); // the channel refused a run: wait, then classify again from it
                    }
                    pos = stop;
                }
                sink.flush(); // the next slice is elsewhere: what is held goes now
            }
        }
    }

    /**
     * The sink of one worker and region: offers runs to one channel. Call {@link ChannelSink#flush()}
     * when done with it: a zero or balloon run may be held back.
     *
     * @param lock held around every call on the lane when workers share the channel, else null
     */
    ChannelSink sink(Lane lane, ReentrantLock lock, int regionId, long pageSize) {
        return new ChannelSink(lane, lock, regionId, pageSize);
    }

    /** Offers runs to one channel; holds zero and balloon runs back to merge them, until {@link #flush()}. */
    final class ChannelSink implements RunSink {
        private final Lane lane;
        private final ReentrantLock lock;
        private final int regionId;
        private final long pageSize;
        /**
         * A zero or balloon run held back to be extended: the classifier is called a step at a time,
         * and a 4 GiB stretch of zeroes should cross the wire as one frame per slice, not one per step
         * (each frame is a hand-over to the channel's sender thread).
         */
        private RunKind heldKind;
        private long heldFirst;
        private long heldCount;

        ChannelSink(Lane lane, ReentrantLock lock, int regionId, long pageSize) {
            this.lane = lane;
            this.lock = lock;
            this.regionId = regionId;
            this.pageSize = pageSize;
        }

        @Override
        public boolean run(RunKind kind, long first, long count) {
            checkAlive.run();
            if (kind != RunKind.NORMAL && kind == heldKind && heldFirst + heldCount == first) {
                heldCount += count; // one frame for a long zero or balloon stretch, however it was stepped
                return true;
            }
            flush();
            if (kind != RunKind.NORMAL) {
                heldKind = kind;
                heldFirst = first;
                heldCount = count;
                return true;
            }
            if (lock != null) {
                lock.lock();
            }
            try {
                long done = 0;
                while (done < count) {
                    long n = lane.offerPages(regionId, first + done, count - done);
                    if (n != Lane.BACK_PRESSURED) {
                        done += n;
                    } else if (done == 0) {
                        return false; // nothing taken: refuse the run, the worker waits and comes back
                    } else {
                        lane.awaitRoom(); // part of the run is on its way: the rest follows it
                    }
                }
                stats.addNormal(count, count * pageSize);
            } finally {
                if (lock != null) {
                    lock.unlock();
                }
            }
            pacer.pace(count * pageSize);
            return true;
        }

        /** Sends the zero or balloon run held back, if any (blocking: it is a header, no page data). */
        void flush() {
            if (heldCount == 0) {
                return;
            }
            if (lock != null) {
                lock.lock();
            }
            try {
                if (heldKind == RunKind.ZERO) {
                    lane.sendZeroRun(regionId, heldFirst, heldCount);
                    stats.addDuplicate(heldCount);
                } else {
                    lane.sendSkipRun(regionId, heldFirst, heldCount);
                    stats.addSkipped(heldCount);
                }
            } finally {
                if (lock != null) {
                    lock.unlock();
                }
            }
            heldCount = 0;
        }

        void awaitRoom() {
            if (lock != null) {
                lock.lock();
            }
            try {
                lane.awaitRoom();
            } finally {
                if (lock != null) {
                    lock.unlock();
                }
            }
        }
    }

    /** The slices of one round: per region, a cursor that workers advance atomically. */
    private static final class Claims {
        private final AtomicLong[] next;
        final long pages;

        Claims(int regions, long pages) {
            this.next = new AtomicLong[regions];
            for (int r = 0; r < regions; r++) {
                next[r] = new AtomicLong();
            }
            this.pages = pages;
        }

        /** @return the first page of the next slice of region {@code r} (past its end when none is left) */
        long next(int r) {
            return next[r].getAndAdd(pages);
        }
    }

    /** max-bandwidth: page data is released no faster than the cap, over all channels together. */
    private static final class Pacer {
        private final long capBytesPerSec;
        private long startNs = -1;
        private long bytes;

        Pacer(long capBytesPerSec) {
            this.capBytesPerSec = capBytesPerSec;
        }

        /** Called after {@code n} bytes were handed on: waits until the cap allows them. */
        void pace(long n) {
            if (capBytesPerSec <= 0) {
                return;
            }
            long due;
            long now;
            synchronized (this) {
                now = System.nanoTime();
                if (startNs < 0) {
                    startNs = now;
                }
                bytes += n;
                due = startNs + (long) (bytes * 1e9 / capBytesPerSec);
            }
            if (due > now) {
                LockSupport.parkNanos(due - now); // rate limit, not waiting for a condition; outside the lock
            }
        }
    }
}
