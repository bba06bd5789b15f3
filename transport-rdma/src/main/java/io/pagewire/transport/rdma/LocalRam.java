package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;

import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The source's own RAM as the NIC sees it: local keys for the RDMA WRITEs that read it. With
 * pin-all every region is registered at connect in pieces of at most 1 GiB; otherwise 1 MiB
 * chunks (option {@code chunk-bytes}) are registered when first written from and kept in a
 * bounded cache ({@code reg-cache-chunks}), the least recently used chunk with no write in flight
 * making room. Registrations grant no remote access: the destination can neither read nor write
 * the source's RAM. Everything is deregistered on close.
 *
 * <p>Thread-safe: {@link #lock} guards the cache; registration runs under it.
 */
final class LocalRam implements AutoCloseable {
    private final RamLayout layout;
    private final ProtectionDomain pd;
    private final boolean pinAll;
    private final long chunkBytes;
    private final MemoryRegion[][] pieces;
    private final ChunkCache cache;
    final ReentrantLock lock = new ReentrantLock();
    final Condition changed = lock.newCondition();
    private boolean closed;

    LocalRam(RamLayout layout, ProtectionDomain pd, RdmaOptions options) {
        this.layout = layout;
        this.pd = pd;
        this.pinAll = options.pinAll();
        this.chunkBytes = options.chunkBytes();
        if (pinAll) {
            pieces = new MemoryRegion[layout.regionCount()][];
            cache = null;
            try {
                for (int r = 0; r < layout.regionCount(); r++) {
                    RamRegion region = layout.region(r);
                    long size = region.descriptor().sizeBytes();
                    pieces[r] = new MemoryRegion[Protocol.pieces(size)];
                    for (int p = 0; p < pieces[r].length; p++) {
                        long off = p * Protocol.PIN_PIECE_BYTES;
                        pieces[r][p] = pd.register(region.memory().asSlice(off, Math.min(Protocol.PIN_PIECE_BYTES, size - off)), 0);
                    }
                }
            } catch (VerbsException e) {
                close();
                throw registrationFailed("pin-all: registering the source's RAM", e);
            }
        } else {
            pieces = null;
            cache = new ChunkCache(options.cacheChunks());
        }
    }

    static TransportException registrationFailed(String what, VerbsException e) {
        return new TransportException(Kind.UNAVAILABLE, what + " failed: " + e.getMessage()
                + " (registration pins memory: raise the memory-lock limit, e.g. 'ulimit -l unlimited' or LimitMEMLOCK=infinity,"
                + " or register less at once: pin-all=false, a smaller reg-cache-chunks)", e);
    }

    /** @return the size of the units writes must not cross */
    long unitBytes() {
        return pinAll ? Protocol.PIN_PIECE_BYTES : chunkBytes;
    }

    /**
     * Makes the unit containing a region offset usable and pins it against eviction.
     *
     * @param via the channel of the calling context (a poller that waits keeps polling it)
     * @return a reference for {@link #release}, or -1 when nothing needs releasing (pin-all)
     */
    int pin(int region, long unit, Channel via) {
        if (pinAll) {
            return -1;
        }
        lock.lock();
        try {
            while (true) {
                if (closed) {
                    throw new TransportException(Kind.CLOSED, "the source's registrations are closed");
                }
                int s = cache.lookup(region, unit);
                if (s >= 0) {
                    cache.pin(s);
                    return s;
                }
                if (!cache.hasFree()) {
                    int v = cache.victim(-1, 0, 0);
                    if (v < 0) {
                        via.waitStep(lock, changed); // every chunk has writes in flight: wait for completions
                        continue;
                    }
                    MemoryRegion old = (MemoryRegion) cache.handle(v);
                    cache.free(v);
                    old.deregister();
                }
                s = cache.reserve(region, unit);
                RamRegion r = layout.region(region);
                long off = unit * chunkBytes;
                long len = Math.min(chunkBytes, r.descriptor().sizeBytes() - off);
                try {
                    MemoryRegion mr = pd.register(r.memory().asSlice(off, len), 0);
                    cache.ready(s, mr.lkey(), mr);
                } catch (VerbsException e) {
                    cache.free(s);
                    throw registrationFailed("registering chunk " + unit + " of region '" + r.name() + "'", e);
                }
                cache.pin(s);
                return s;
            }
        } finally {
            lock.unlock();
        }
    }

    /** @return the local key for a unit pinned with {@link #pin} */
    int lkey(int region, long unit, int ref) {
        if (pinAll) {
            return pieces[region][(int) unit].lkey();
        }
        lock.lock();
        try {
            return cache.key(ref);
        } finally {
            lock.unlock();
        }
    }

    /** Releases references once the writes through them completed. */
    void release(int[] refs, int n) {
        if (n == 0 || pinAll) {
            return;
        }
        lock.lock();
        try {
            for (int i = 0; i < n; i++) {
                if (refs[i] >= 0 && !closed) {
                    cache.release(refs[i]);
                }
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** @return registrations alive now (for tests and stats) */
    int liveRegistrations() {
        lock.lock();
        try {
            if (pinAll) {
                int n = 0;
                for (MemoryRegion[] p : pieces) {
                    n += p == null ? 0 : p.length;
                }
                return n;
            }
            return cache.used();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void close() {
        lock.lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            if (pieces != null) {
                for (MemoryRegion[] p : pieces) {
                    if (p != null) {
                        for (MemoryRegion m : p) {
                            if (m != null) {
                                m.deregister();
                            }
                        }
                    }
                }
            }
            if (cache != null) {
                for (int s = 0; s < cache.capacity(); s++) {
                    if (cache.state(s) == ChunkCache.READY) {
                        ((MemoryRegion) cache.handle(s)).deregister();
                        cache.free(s);
                    }
                }
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }
}
