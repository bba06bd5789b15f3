package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.kit.SourceLane;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

/**
 * Builds and posts the messages of one connection: page frames with their RDMA WRITEs (straight
 * from guest RAM, or from a digest staging copy, into destination RAM or its staging slot), the
 * source's background sender loop that packs queued descriptors into messages, the wait for each
 * round end's acknowledgement, and the count of the work done ({@link RdmaWork}).
 *
 * <p>Threads: the sender thread owns the background messages; urgent messages are built under the
 * connection's urgent lock; counters are thread-safe.
 */
final class MessageWriter {
    private final RdmaConnection c;
    private final SourceQueue queue; // source only
    private final int maxWrites;
    private long bgPagesSent;        // sender thread only
    // round-end acknowledgement (source)
    private final ReentrantLock roundLock = new ReentrantLock();
    private final Condition roundChanged = roundLock.newCondition();
    private boolean roundPending;
    private long awaitedRound;

    private final LongAdder copiedPageBytes = new LongAdder();
    private final LongAdder messagesPosted = new LongAdder();
    private final LongAdder pageMessages = new LongAdder();
    private final LongAdder framesBuilt = new LongAdder();

    MessageWriter(RdmaConnection connection, SourceQueue queue, int maxWrites) {
        this.c = connection;
        this.queue = queue;
        this.maxWrites = maxWrites;
    }

    /** Wakes the sender and any round-end wait (the connection ended). */
    void wake() {
        if (queue != null) {
            queue.close();
        }
        roundLock.lock();
        try {
            roundChanged.signalAll();
        } finally {
            roundLock.unlock();
        }
    }

    /** The destination acknowledged round end {@code round}. */
    void onRoundAck(long round) {
        roundLock.lock();
        try {
            if (!roundPending || round != awaitedRound) {
                throw new WireException("RDMA_ROUND_ACK for round " + round + ", but " + (roundPending ? "round " + awaitedRound : "no round")
                        + " is outstanding");
            }
            roundPending = false;
            roundChanged.signalAll();
        } finally {
            roundLock.unlock();
        }
    }

    private static long nextBoundary(long pos, long unit) {
        return unit == Long.MAX_VALUE ? Long.MAX_VALUE : (pos / unit + 1) * unit;
    }

    /**
     * Appends as many pages of a run as fit the message: one PAGES frame and its RDMA WRITEs.
     *
     * @return pages appended, 0 when none fit
     */
    long appendPages(Message m, Channel ch, int regionId, long first, long count, CRC32C crc) {
        RamRegion region = c.layout().region(regionId);
        long ps = region.pageSize();
        int trailer = c.dataDigest() ? Wire.DIGEST_LENGTH : 0;
        if (m.room() < FrameHeader.LENGTH + trailer) {
            return 0;
        }
        long n = Math.min(count, (c.batchBytes() - m.pageBytes) / ps);
        if (n <= 0) {
            return 0;
        }
        int mode = c.remoteRam.mode(regionId);
        long localUnit = c.dataDigest() ? Long.MAX_VALUE : c.localRam.unitBytes();
        long remoteUnit = c.remoteRam.unitBytes(regionId);
        long off = first * ps;
        long limit = off + n * ps;
        long pos = off;
        int writes = 0;
        int room = Math.min(m.writesRoom(), maxWrites - (m.batch.count()));
        while (pos < limit && writes < room) {
            pos = Math.min(limit, Math.min(nextBoundary(pos, localUnit), nextBoundary(pos, remoteUnit)));
            writes++;
        }
        n = (pos - off) / ps;
        if (n == 0) {
            return 0;
        }
        long len = n * ps;
        boolean isUrgent = ch == c.urgent;
        long remoteStaging = 0;
        if (mode == Protocol.MODE_STAGED) {
            if (!m.staged) {
                m.stagingSlot = ch.awaitStagingSlot();
                m.staged = true;
            }
            remoteStaging = c.remoteRam.stagingAddress(isUrgent, m.stagingSlot) + m.stagedBytes;
            m.stagedBytes += len;
        }
        long localStaging = 0;
        int digest = 0;
        if (c.dataDigest()) {
            // Copy first, checksum the copy, write the copy: a running guest may change the page meanwhile.
            MemorySegment.copy(region.memory(), off, m.txStaging, m.txStagingUsed, len);
            copiedPageBytes.add(len);
            digest = Wire.crc32c(crc, m.txStaging, m.txStagingUsed, len);
            localStaging = m.txStaging.address() + m.txStagingUsed;
            m.txStagingUsed += len;
        }
        m.frame(FrameType.PAGES, c.dataDigest() ? FrameHeader.FLAG_DATA_DIGEST : 0, regionId, first, n, (int) len);
        if (c.dataDigest()) {
            m.u32(digest);
        }
        long base = region.memory().address();
        pos = off;
        long end = off + len;
        while (pos < end) {
            long next = Math.min(end, Math.min(nextBoundary(pos, localUnit), nextBoundary(pos, remoteUnit)));
            long localAt;
            int lkey;
            if (c.dataDigest()) {
                localAt = localStaging + (pos - off);
                lkey = m.txStagingLkey;
            } else {
                long unit = pos / localUnit;
                int ref = c.localRam.pin(regionId, unit, ch);
                m.localRefs[m.localRefCount++] = ref;
                lkey = c.localRam.lkey(regionId, unit, ref);
                localAt = base + pos;
            }
            long remoteAt;
            int rkey;
            if (mode == Protocol.MODE_STAGED) {
                remoteAt = remoteStaging + (pos - off);
                rkey = c.remoteRam.stagingRkey(isUrgent);
            } else {
                long unit = pos / remoteUnit;
                int ref = c.remoteRam.pin(regionId, unit, ch);
                m.remoteRefs[m.remoteRefCount++] = ref;
                rkey = c.remoteRam.rkey(regionId, unit, ref);
                remoteAt = c.remoteRam.address(regionId, pos);
            }
            m.write(localAt, (int) (next - pos), lkey, remoteAt, rkey);
            pos = next;
        }
        m.pageBytes += len;
        m.pages += n;
        return n;
    }

    /** Posts a built message and accounts for it. */
    void postMessage(Channel ch, Message m) {
        ch.post(m);
        messagesPosted.increment();
        framesBuilt.add(m.frames);
        if (m.pages > 0) {
            pageMessages.increment();
        }
        if (ch != c.urgent) {
            c.stats().onSent(m.pages, m.pageBytes + m.length, false); // the kit's urgent lane counts urgent sends
        }
    }

    /** The source's sender thread: packs queued entries into messages until the queue closes. */
    void senderLoop() throws InterruptedException {
        SourceQueue.Entry e = new SourceQueue.Entry();
        CRC32C crc = new CRC32C();
        while (queue.take(e)) {
            boolean more = true;
            while (more) {
                Message m = c.background.begin();
                int barrier = SourceQueue.NONE;
                while (true) {
                    if (!append(m, e, crc)) {
                        break; // the message is full; e keeps its remainder
                    }
                    if (e.kind == SourceQueue.ROUND_END || e.kind == SourceQueue.COMPLETE) {
                        barrier = e.kind;
                        e.kind = SourceQueue.NONE;
                        break;
                    }
                    if (!queue.poll(e)) {
                        e.kind = SourceQueue.NONE;
                        break;
                    }
                }
                long pending = m.pendingBytes;
                if (barrier == SourceQueue.ROUND_END) {
                    roundLock.lock();
                    try {
                        roundPending = true;
                    } finally {
                        roundLock.unlock();
                    }
                }
                postMessage(c.background, m);
                bgPagesSent += m.pages;
                c.stats().addPending(-pending);
                if (barrier == SourceQueue.ROUND_END) {
                    awaitRoundAck();
                }
                more = e.kind != SourceQueue.NONE;
            }
            queue.idle();
        }
    }

    /** Appends (as much as fits of) an entry. @return true when the whole entry went in */
    private boolean append(Message m, SourceQueue.Entry e, CRC32C crc) {
        switch (e.kind) {
            case SourceQueue.PAGES -> {
                long n = appendPages(m, c.background, e.region, e.first, e.count, crc);
                long ps = c.layout().region(e.region).pageSize();
                m.pendingBytes += n * ps;
                e.first += n;
                e.count -= n;
                if (e.count > 0 && n == 0 && m.isEmpty()) {
                    throw new IllegalStateException("a page of region " + e.region + " does not fit an empty message");
                }
                return e.count == 0;
            }
            case SourceQueue.ZERO_RUN, SourceQueue.SKIP_RUN -> {
                if (m.room() < FrameHeader.LENGTH) {
                    return false;
                }
                m.frame(e.kind == SourceQueue.ZERO_RUN ? FrameType.ZERO_RUN : FrameType.SKIP_RUN, 0, e.region, e.first, e.count, 0);
                return true;
            }
            case SourceQueue.CONTROL -> {
                if (m.room() < FrameHeader.LENGTH + e.payload.length) {
                    return false;
                }
                m.frame(FrameType.CONTROL, 0, 0, 0, 0, e.payload.length);
                m.bytes(e.payload);
                e.payload = null;
                return true;
            }
            case SourceQueue.ROUND_END -> {
                if (m.room() < FrameHeader.LENGTH) {
                    return false;
                }
                m.frame(FrameType.ROUND_END, 0, 0, e.first, 0, 0);
                roundLock.lock();
                try {
                    awaitedRound = e.first;
                } finally {
                    roundLock.unlock();
                }
                return true;
            }
            case SourceQueue.COMPLETE -> {
                if (m.room() < FrameHeader.LENGTH) {
                    return false;
                }
                m.frame(FrameType.COMPLETE, 0, 0, 0, bgPagesSent + m.pages, 0);
                return true;
            }
            default -> throw new IllegalStateException("unknown queue entry kind " + e.kind);
        }
    }

    private void awaitRoundAck() {
        roundLock.lock();
        try {
            while (roundPending) {
                c.background.waitStep(roundLock, roundChanged);
            }
        } finally {
            roundLock.unlock();
        }
    }

    /** @return the source's background lane: descriptors into the queue, for the sender thread */
    SourceLane sourceLane() {
        return new RdmaSourceLane();
    }

    private final class RdmaSourceLane extends SourceLane {
        private final BatchQueue pagesQueue = (region, first, n, bytes) -> queue.offer(SourceQueue.PAGES, region, first, n, bytes, null);
        RdmaSourceLane() {
            super(c);
        }

        @Override
        protected long offer(RamRegion r, int regionId, long firstPage, long pageCount) {
            return offerBatches(r, regionId, firstPage, pageCount, c.batchBytes(), pagesQueue);
        }

        @Override
        protected void waitForRoom() {
            queue.awaitSpace();
        }

        @Override
        protected void put(int type, int regionId, long first, long count, byte[] payload) {
            while (!queue.offer(type, regionId, first, count, 0, payload)) {
                c.stats().onBackPressure();
                queue.awaitSpace();
            }
        }

        @Override
        protected void drain() {
            queue.awaitDrained();
            c.background.awaitQuiet();
        }
    }

    /** @return what the connection did itself so far */
    RdmaWork work() {
        return new RdmaWork(copiedPageBytes.sum(), messagesPosted.sum(), pageMessages.sum(), framesBuilt.sum(),
                c.urgent.creditMessages.sum() + c.background.creditMessages.sum());
    }
}
