package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.wire.FrameType;

import java.lang.foreign.MemorySegment;

/**
 * The source's background lane, written once: argument checks, the rule that nothing follows
 * COMPLETE, back-pressure accounting and the blocking forms. A transport adds how it queues or
 * writes: {@link #offer} (non-blocking, page data), {@link #put} (blocking, everything else),
 * {@link #waitForRoom} and {@link #drain}.
 *
 * <p>Single producer, as the SPI says: no method here is safe to call from two threads at once.
 */
public abstract class SourceLane implements Lane {
    private final KitConnection connection;
    private boolean completing;

    protected SourceLane(KitConnection connection) {
        this.connection = connection;
    }

    /**
     * Takes as many pages from the start of the range as fit now, without blocking.
     *
     * @return pages taken (1..count), or {@link Lane#BACK_PRESSURED}
     */
    protected abstract long offer(RamRegion region, int regionId, long first, long count);

    /** Blocks until an offer may succeed, or throws when the connection failed or closed. */
    protected abstract void waitForRoom();

    /**
     * Queues or writes one frame without page data, blocking while there is no room: ZERO_RUN,
     * SKIP_RUN (region, first, count), ROUND_END (first = round), CONTROL (payload, copied),
     * COMPLETE (the transport fills in the page count of each stream).
     */
    protected abstract void put(int type, int regionId, long first, long count, byte[] payload);

    /** Blocks until everything queued has been read from RAM and handed to the medium. */
    protected abstract void drain();

    /** Takes one batch of page descriptors into a bounded queue, without blocking. */
    @FunctionalInterface
    protected interface BatchQueue {
        /** @return false when the queue is full */
        boolean offer(int regionId, long first, long count, long bytes);
    }

    /**
     * Splits a page range into batches of at most {@code maxPayload} bytes and queues as many as fit.
     *
     * @return pages taken (1..count), or {@link Lane#BACK_PRESSURED} when none fit
     */
    protected static long offerBatches(RamRegion r, int regionId, long firstPage, long pageCount, int maxPayload, BatchQueue queue) {
        long perBatch = maxPayload / r.pageSize();
        long taken = 0;
        while (taken < pageCount) {
            long n = Math.min(pageCount - taken, perBatch);
            if (!queue.offer(regionId, firstPage + taken, n, n * r.pageSize())) {
                break;
            }
            taken += n;
        }
        return taken == 0 ? BACK_PRESSURED : taken;
    }

    private void checkSendable() {
        connection.ensureOpen();
        if (completing) {
            throw new IllegalStateException("background lane: send after sendComplete()");
        }
    }

    @Override
    public final LaneKind kind() {
        return LaneKind.BACKGROUND;
    }

    @Override
    public final long offerPages(int regionId, long firstPage, long pageCount) {
        RamRegion r = connection.checkedRegion(regionId, firstPage, pageCount);
        checkSendable();
        long n = offer(r, regionId, firstPage, pageCount);
        if (n == BACK_PRESSURED) {
            connection.stats.onBackPressure();
        }
        return n;
    }

    @Override
    public final void sendPages(int regionId, long firstPage, long pageCount) {
        long done = 0;
        while (done < pageCount) {
            long n = offerPages(regionId, firstPage + done, pageCount - done);
            if (n == BACK_PRESSURED) {
                TransportEvents.BackPressureStall stall = new TransportEvents.BackPressureStall();
                stall.begin();
                waitForRoom();
                if (stall.shouldCommit()) {
                    stall.peer = connection.peer;
                    stall.regionId = regionId;
                    stall.firstPage = firstPage + done;
                    stall.commit();
                }
            } else {
                done += n;
            }
        }
    }

    @Override
    public final void awaitRoom() {
        connection.ensureOpen();
        waitForRoom();
    }

    @Override
    public final void sendZeroRun(int regionId, long firstPage, long pageCount) {
        connection.checkedRegion(regionId, firstPage, pageCount);
        checkSendable();
        put(FrameType.ZERO_RUN, regionId, firstPage, pageCount, null);
    }

    @Override
    public final void sendSkipRun(int regionId, long firstPage, long pageCount) {
        connection.checkedRegion(regionId, firstPage, pageCount);
        checkSendable();
        put(FrameType.SKIP_RUN, regionId, firstPage, pageCount, null);
    }

    @Override
    public final void sendRoundEnd(long round) {
        if (round < 0) {
            throw new IllegalArgumentException("round " + round + " is negative");
        }
        checkSendable();
        put(FrameType.ROUND_END, 0, round, 0, null);
    }

    @Override
    public final void sendPageRequest(int regionId, long firstPage, int pageCount) {
        throw new IllegalStateException("page requests go on the urgent lane, from the destination");
    }

    @Override
    public final void sendControl(MemorySegment payload) {
        byte[] copy = KitConnection.controlCopy(payload);
        checkSendable();
        put(FrameType.CONTROL, 0, 0, 0, copy);
    }

    @Override
    public final void sendComplete() {
        checkSendable();
        put(FrameType.COMPLETE, 0, 0, 0, null);
        completing = true;
    }

    @Override
    public final void flush() {
        connection.ensureOpen();
        drain();
        connection.ensureOpen();
    }
}
