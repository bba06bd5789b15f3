package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;

/**
 * The source's view of the destination's RAM: where to RDMA-WRITE each page and with which
 * rkey. Pinned regions come with one rkey per 1 GiB piece; on-demand regions are registered a
 * chunk at a time through RDMA_REGISTER on the urgent queue pair (so a stalled background lane
 * never delays an urgent page), several chunks ahead when the cache has room; staged regions
 * (a placer at the destination) go to the destination's staging slot of each message.
 *
 * <p>The cache mirrors the destination's registrations and never exceeds the bound the
 * destination announced: a request names the victims to deregister before the new chunks are
 * registered, victims are only chunks with no write in flight, and requests go one at a time
 * over one queue pair, so the destination applies them in the order the source decided them.
 *
 * <p>Thread-safe: {@link #lock} guards the cache and the outstanding request.
 */
final class RemoteRam {
    private final RamLayout layout;
    private final Protocol.Regions info;
    private final ChunkCache cache;
    final ReentrantLock lock = new ReentrantLock();
    final Condition changed = lock.newCondition();
    private Channel registrar;
    // the one outstanding RDMA_REGISTER (guarded by lock)
    private boolean requesting;
    private int reqRegion;
    private long reqFirst;
    private int reqCount;
    private final int[] victimRegion = new int[Protocol.MAX_VICTIMS];
    private final long[] victimChunk = new long[Protocol.MAX_VICTIMS];

    RemoteRam(RamLayout layout, Protocol.Regions info) {
        this.layout = layout;
        this.info = info;
        this.cache = new ChunkCache(info.cacheChunks());
    }

    /** The channel that carries registration requests (urgent). */
    void registrar(Channel ch) {
        this.registrar = ch;
    }

    /** @return the destination's bound on on-demand registrations */
    int cacheChunks() {
        return info.cacheChunks();
    }

    /** @return whether any region is registered on demand */
    boolean hasOnDemandRegions() {
        for (Protocol.RegionKeys r : info.regions()) {
            if (r.mode() == Protocol.MODE_ON_DEMAND) {
                return true;
            }
        }
        return false;
    }

    int mode(int region) {
        return info.regions().get(region).mode();
    }

    /** @return the units writes must not cross in a region (staged: the whole slot) */
    long unitBytes(int region) {
        return switch (mode(region)) {
            case Protocol.MODE_PINNED -> Protocol.PIN_PIECE_BYTES;
            case Protocol.MODE_ON_DEMAND -> info.chunkBytes();
            default -> Long.MAX_VALUE;
        };
    }

    /** @return the destination address of a byte offset in a (non-staged) region */
    long address(int region, long offset) {
        return info.regions().get(region).base() + offset;
    }

    /** @return the staging slot address of a lane's slot */
    long stagingAddress(boolean urgent, int slot) {
        return (urgent ? info.urgentStagingAddress() : info.bgStagingAddress()) + (long) slot * info.stagingSlotBytes();
    }

    int stagingRkey(boolean urgent) {
        return urgent ? info.urgentStagingRkey() : info.bgStagingRkey();
    }

    /**
     * Makes a unit writable and pins it against eviction; may send RDMA_REGISTER and wait.
     *
     * @param via the channel of the calling context
     * @return a reference for {@link #release}, or -1 when nothing needs releasing
     */
    int pin(int region, long unit, Channel via) {
        if (mode(region) != Protocol.MODE_ON_DEMAND) {
            return -1;
        }
        long chunks = (layout.region(region).descriptor().sizeBytes() + info.chunkBytes() - 1) / info.chunkBytes();
        lock.lock();
        try {
            while (true) {
                int s = cache.lookup(region, unit);
                if (s >= 0 && cache.state(s) == ChunkCache.READY) {
                    cache.pin(s);
                    return s;
                }
                if (s >= 0 || requesting) {
                    via.waitStep(lock, changed); // a request is on its way
                    continue;
                }
                // Plan a request: the chunk and the absent chunks right after it, as far as room allows.
                int want = 1;
                while (want < Protocol.REGISTER_AHEAD && unit + want < chunks && cache.lookup(region, unit + want) < 0) {
                    want++;
                }
                int victims = 0;
                int free = cache.capacity() - cache.used();
                while (free + victims < want && victims < Protocol.MAX_VICTIMS) {
                    int v = cache.victim(region, unit, unit + want);
                    if (v < 0) {
                        break;
                    }
                    victimRegion[victims] = cache.region(v);
                    victimChunk[victims] = cache.chunk(v);
                    cache.free(v);
                    victims++;
                }
                int n = Math.min(want, free + victims);
                if (n == 0) {
                    via.waitStep(lock, changed); // every chunk has writes in flight: wait for completions
                    continue;
                }
                for (int i = 0; i < n; i++) {
                    cache.reserve(region, unit + i);
                }
                requesting = true;
                reqRegion = region;
                reqFirst = unit;
                reqCount = n;
                // The victim arrays belong to the one requesting thread until the answer; the lock is
                // released while posting because the urgent poller needs it to release completed writes.
                lock.unlock();
                try {
                    Message m = registrar.begin();
                    m.frame(Protocol.RDMA_REGISTER, 0, region, unit, n, victims * 12);
                    for (int i = 0; i < victims; i++) {
                        m.buf.set(U32, m.length, victimRegion[i]);
                        m.buf.set(U64, m.length + 4, victimChunk[i]);
                        m.length += 12;
                    }
                    registrar.post(m);
                } finally {
                    lock.lock();
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** @return the rkey of a unit pinned with {@link #pin} */
    int rkey(int region, long unit, int ref) {
        if (mode(region) == Protocol.MODE_PINNED) {
            return info.regions().get(region).rkeys()[(int) unit];
        }
        lock.lock();
        try {
            return cache.key(ref);
        } finally {
            lock.unlock();
        }
    }

    /** RDMA_REGISTERED arrived (urgent poller): the outstanding request's chunks are ready. */
    void onRegistered(int region, long first, long count, MemorySegment buf, long payload) {
        lock.lock();
        try {
            if (!requesting || region != reqRegion || first != reqFirst || count != reqCount) {
                throw new WireException("RDMA_REGISTERED for region " + region + " chunks [" + first + ", " + first + "+" + count
                        + ") answers no outstanding RDMA_REGISTER" + (requesting ? " (outstanding: region " + reqRegion + " chunks [" + reqFirst
                        + ", " + reqFirst + "+" + reqCount + "))" : ""));
            }
            for (int i = 0; i < count; i++) {
                int s = cache.lookup(region, first + i);
                if (s < 0 || cache.state(s) != ChunkCache.PENDING) {
                    throw new IllegalStateException("chunk " + (first + i) + " of region " + region + " is not pending");
                }
                cache.ready(s, buf.get(U32, payload + 4L * i), null);
            }
            requesting = false;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Releases references once the writes through them completed. */
    void release(int[] refs, int n) {
        if (n == 0) {
            return;
        }
        lock.lock();
        try {
            for (int i = 0; i < n; i++) {
                if (refs[i] >= 0) {
                    cache.release(refs[i]);
                }
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Wakes waiters (failure). */
    void wake() {
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** @return chunks the destination has registered for us now (on-demand regions) */
    int registeredChunks() {
        lock.lock();
        try {
            return cache.used();
        } finally {
            lock.unlock();
        }
    }
}
