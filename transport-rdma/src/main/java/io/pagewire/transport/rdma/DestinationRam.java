package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;

/**
 * The destination's RAM as the source may write it. A region is one of:
 * <ul>
 * <li><b>pinned</b> (pin-all): registered at accept in pieces of at most 1 GiB, remote-writable
 *     until close: the source may write anywhere in it;</li>
 * <li><b>on demand</b> (default): chunks registered when the source asks (RDMA_REGISTER), at most
 *     {@code reg-cache-chunks} at once; the source names victims to deregister first, and asking
 *     for more than the bound is a protocol error;</li>
 * <li><b>staged</b>: a region with a {@link io.pagewire.transport.spi.PagePlacer} is never
 *     registered; its pages land in a per-queue-pair staging area of {@link Protocol#STAGING_SLOTS}
 *     slots of one batch each, and the placer copies them into place.</li>
 * </ul>
 * Registrations grant remote write, never remote read. Everything is deregistered on close.
 *
 * <p>Thread-safe (synchronized): requests come from the urgent poller, close from any thread.
 */
final class DestinationRam implements AutoCloseable {
    private final RamLayout layout;
    private final ProtectionDomain pd;
    private final int[] modes;
    private final MemoryRegion[][] pieces;
    private final long chunkBytes;
    private final ChunkCache cache;
    private final int slotBytes;
    private final Arena stagingArena;
    private final MemorySegment bgStaging;
    private final MemorySegment urgentStaging;
    private final MemoryRegion bgStagingMr;
    private final MemoryRegion urgentStagingMr;
    private boolean closed;

    DestinationRam(RamLayout layout, ProtectionDomain pd, RdmaOptions options, int batchBytes) {
        this.layout = layout;
        this.pd = pd;
        this.chunkBytes = options.chunkBytes();
        this.slotBytes = batchBytes;
        this.modes = new int[layout.regionCount()];
        this.pieces = new MemoryRegion[layout.regionCount()][];
        boolean anyStaged = false;
        for (int r = 0; r < modes.length; r++) {
            RamRegion region = layout.region(r);
            modes[r] = region.placer() != null ? Protocol.MODE_STAGED : options.pinAll() ? Protocol.MODE_PINNED : Protocol.MODE_ON_DEMAND;
            anyStaged |= modes[r] == Protocol.MODE_STAGED;
        }
        this.cache = new ChunkCache(options.cacheChunks());
        boolean ok = false;
        Arena arena = null;
        MemoryRegion bgMr = null;
        MemoryRegion urMr = null;
        MemorySegment bg = null;
        MemorySegment ur = null;
        try {
            for (int r = 0; r < modes.length; r++) {
                if (modes[r] != Protocol.MODE_PINNED) {
                    continue;
                }
                RamRegion region = layout.region(r);
                long size = region.descriptor().sizeBytes();
                pieces[r] = new MemoryRegion[Protocol.pieces(size)];
                for (int p = 0; p < pieces[r].length; p++) {
                    long off = p * Protocol.PIN_PIECE_BYTES;
                    pieces[r][p] = pd.register(region.memory().asSlice(off, Math.min(Protocol.PIN_PIECE_BYTES, size - off)),
                            Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
                }
            }
            if (anyStaged) {
                arena = Arena.ofShared();
                long bytes = (long) Protocol.STAGING_SLOTS * batchBytes;
                bg = arena.allocate(bytes, 4096);
                ur = arena.allocate(bytes, 4096);
                bgMr = pd.register(bg, Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
                urMr = pd.register(ur, Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
            }
            ok = true;
        } catch (VerbsException e) {
            throw LocalRam.registrationFailed(options.pinAll() ? "pin-all: registering the destination's RAM" : "registering staging buffers", e);
        } finally {
            this.stagingArena = arena;
            this.bgStaging = bg;
            this.urgentStaging = ur;
            this.bgStagingMr = bgMr;
            this.urgentStagingMr = urMr;
            if (!ok) {
                close();
            }
        }
    }

    int mode(int region) {
        return modes[region];
    }

    /** @return the staging slot of a lane (staged regions) */
    MemorySegment staging(boolean urgent) {
        return urgent ? urgentStaging : bgStaging;
    }

    int slotBytes() {
        return slotBytes;
    }

    /** @return the RDMA_REGIONS description for the source */
    Protocol.Regions describe(int rxDepth, int cacheChunks) {
        List<Protocol.RegionKeys> rs = new ArrayList<>();
        for (int r = 0; r < modes.length; r++) {
            long base = modes[r] == Protocol.MODE_STAGED ? 0 : layout.region(r).memory().address();
            int[] keys = new int[0];
            if (modes[r] == Protocol.MODE_PINNED) {
                keys = new int[pieces[r].length];
                for (int p = 0; p < keys.length; p++) {
                    keys[p] = pieces[r][p].rkey();
                }
            }
            rs.add(new Protocol.RegionKeys(modes[r], base, keys));
        }
        boolean staged = bgStagingMr != null;
        return new Protocol.Regions(rxDepth, (int) chunkBytes, cacheChunks, staged ? Protocol.STAGING_SLOTS : 0, staged ? slotBytes : 0,
                staged ? bgStaging.address() : 0, staged ? bgStagingMr.rkey() : 0, staged ? urgentStaging.address() : 0,
                staged ? urgentStagingMr.rkey() : 0, rs);
    }

    /**
     * Handles an RDMA_REGISTER from an untrusted source: deregisters the victims, registers the
     * chunks, writes their rkeys into {@code out}.
     *
     * @throws WireException naming the bad value and its bound
     */
    synchronized void register(int region, long first, long count, MemorySegment buf, long victimsAt, int victimBytes, int[] out) {
        if (closed) {
            throw new TransportException(TransportException.Kind.CLOSED, "destination registrations closed");
        }
        if (region < 0 || region >= modes.length) {
            throw new WireException("invalid RDMA_REGISTER frame: region id " + Integer.toUnsignedString(region) + " outside 0.." + (modes.length - 1));
        }
        RamRegion r = layout.region(region);
        if (modes[region] != Protocol.MODE_ON_DEMAND) {
            throw new WireException("invalid RDMA_REGISTER frame: region " + region + " '" + r.name() + "' is "
                    + (modes[region] == Protocol.MODE_PINNED ? "registered whole (pin-all)" : "staged (it has a placer)") + ", not registered on demand");
        }
        long chunks = (r.descriptor().sizeBytes() + chunkBytes - 1) / chunkBytes;
        if (count < 1 || count > Protocol.MAX_REGISTER_CHUNKS) {
            throw new WireException("invalid RDMA_REGISTER frame: chunk count " + count + " outside 1.." + Protocol.MAX_REGISTER_CHUNKS);
        }
        if (first < 0 || first >= chunks || count > chunks - first) {
            throw new WireException("invalid RDMA_REGISTER frame: chunks [" + first + ", " + first + "+" + count + ") outside region " + region
                    + " '" + r.name() + "' of " + chunks + " chunks");
        }
        if (victimBytes % 12 != 0 || victimBytes / 12 > Protocol.MAX_VICTIMS) {
            throw new WireException("invalid RDMA_REGISTER frame: victim list of " + victimBytes + " bytes (a multiple of 12, at most "
                    + Protocol.MAX_VICTIMS + " victims)");
        }
        int victims = victimBytes / 12;
        for (int i = 0; i < victims; i++) {
            int vr = buf.get(U32, victimsAt + 12L * i);
            long vc = buf.get(U64, victimsAt + 12L * i + 4);
            int s = vr >= 0 && vr < modes.length ? cache.lookup(vr, vc) : -1;
            if (s < 0) {
                throw new WireException("invalid RDMA_REGISTER frame: victim chunk " + vc + " of region " + Integer.toUnsignedString(vr)
                        + " is not registered");
            }
            ((MemoryRegion) cache.handle(s)).deregister();
            cache.free(s);
        }
        int missing = 0;
        for (long c = first; c < first + count; c++) {
            if (cache.lookup(region, c) < 0) {
                missing++;
            }
        }
        if (cache.used() + missing > cache.capacity()) {
            throw new WireException("invalid RDMA_REGISTER frame: " + (cache.used() + missing) + " chunks would be registered, over the bound of "
                    + cache.capacity() + " this destination announced");
        }
        for (int i = 0; i < count; i++) {
            long c = first + i;
            int s = cache.lookup(region, c);
            if (s < 0) {
                long off = c * chunkBytes;
                long len = Math.min(chunkBytes, r.descriptor().sizeBytes() - off);
                s = cache.reserve(region, c);
                try {
                    MemoryRegion mr = pd.register(r.memory().asSlice(off, len), Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE);
                    cache.ready(s, mr.rkey(), mr);
                } catch (VerbsException e) {
                    cache.free(s);
                    throw LocalRam.registrationFailed("registering chunk " + c + " of region '" + r.name() + "'", e);
                }
            }
            out[i] = cache.key(s);
        }
    }

    /** @return chunks registered on demand now */
    synchronized int registeredChunks() {
        return cache.used();
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (MemoryRegion[] p : pieces) {
            if (p != null) {
                for (MemoryRegion m : p) {
                    if (m != null) {
                        m.deregister();
                    }
                }
            }
        }
        for (int s = 0; s < cache.capacity(); s++) {
            if (cache.state(s) == ChunkCache.READY) {
                ((MemoryRegion) cache.handle(s)).deregister();
                cache.free(s);
            }
        }
        if (bgStagingMr != null) {
            bgStagingMr.deregister();
        }
        if (urgentStagingMr != null) {
            urgentStagingMr.deregister();
        }
        if (stagingArena != null) {
            stagingArena.close();
        }
    }
}
