package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The destination side of a precopy migration: listens, populates its RAM in bulk ahead of the
 * stream, lets the transport place pages, keeps account of every page (normal, zero or
 * ballooned), and acknowledges completion only when every page of the layout is accounted for.
 * On any failure it reports failure, never done.
 *
 * <h2>Threading</h2>
 * The handler runs on transport threads, several at once for different pages; the bitmaps are
 * updated with atomic word operations. Rounds are ordered by the transport's round-end barrier,
 * so a page's zero run and its data never race.
 */
public final class DestinationMigration implements AutoCloseable {
    private static final long POPULATE_CHUNK = 64L << 20;

    private final List<GuestRegion> regions;
    private final Arena arena = Arena.ofShared();
    private final DirtyBitmap[] accounted;
    private final DirtyBitmap[] hasData;
    private final MigrationStats stats = new MigrationStats();
    private final AtomicLong rounds = new AtomicLong();
    private volatile boolean stopPopulating;
    private Thread populator;
    private volatile String verification;
    private volatile String populateError;
    private volatile Populate populateMode = Populate.NONE;
    private final Object hintLock = new Object();
    private final java.util.BitSet[] wantedChunks;
    private final long[] hintChunkPages;

    /** @param ram the destination's guest RAM, with the same regions as the source */
    public DestinationMigration(GuestRam ram) {
        this.regions = ram.regions();
        this.accounted = new DirtyBitmap[regions.size()];
        this.hasData = new DirtyBitmap[regions.size()];
        this.wantedChunks = new java.util.BitSet[regions.size()];
        this.hintChunkPages = new long[regions.size()];
        long total = 0;
        for (int i = 0; i < regions.size(); i++) {
            accounted[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            hasData[i] = DirtyBitmap.allocate(regions.get(i).pageCount(), arena);
            total += regions.get(i).sizeBytes();
        }
        stats.totalBytes(total);
        stats.pageSize(regions.getFirst().pageSize());
    }

    /** @return the transport's view of a guest RAM's regions */
    public static RamLayout layout(GuestRam ram) {
        List<RamRegion> rs = new ArrayList<>();
        for (GuestRegion r : ram.regions()) {
            rs.add(RamRegion.of(r.name(), r.memory().asSlice(0, r.sizeBytes()), r.pageSize()));
        }
        return RamLayout.of(rs);
    }

    /** Listens on {@code uri} with this RAM's layout. */
    public Listener listen(GuestRam ram, String uri) {
        return Transports.listen(uri, new TransportContext().layout(layout(ram)));
    }

    /** How destination RAM is populated. */
    public enum Populate {
        /** Populate the chunks the source says hold data, in order, on a background thread while receiving (default). */
        HINTED,
        /** Populate everything on a background thread while receiving. */
        ALL,
        /** Populate everything before accepting (a pre-populated destination). */
        BEFORE,
        /** Never: page writes fault the memory in. */
        NONE
    }

    /**
     * Starts populating ({@code MADV_POPULATE_WRITE}, 64 MiB at a time) so that pages arriving
     * later land in memory that takes no page fault. Runs in parallel with receiving; a page the
     * stream reaches first is simply faulted in by the transport's write. With {@code BEFORE} it
     * returns when everything is populated.
     */
    public void startPopulating(Populate mode) {
        this.populateMode = mode;
        switch (mode) {
            case NONE -> {
            }
            case BEFORE -> populateAll();
            case ALL -> populator = Thread.ofPlatform().daemon().name("pagewire-populate").start(this::populateAllQuietly);
            case HINTED -> populator = Thread.ofPlatform().daemon().name("pagewire-populate").start(this::populateHinted);
            default -> throw new IllegalArgumentException(mode.toString());
        }
    }

    private void populateAll() {
        for (GuestRegion r : regions) {
            long step = Math.max(1, POPULATE_CHUNK / r.pageSize());
            for (long p = 0; p < r.pageCount() && !stopPopulating; p += step) {
                r.populate(p, Math.min(step, r.pageCount() - p));
            }
        }
    }

    private void populateAllQuietly() {
        try {
            populateAll();
        } catch (RuntimeException e) {
            populateFailed(e);
        }
    }

    private void populateFailed(RuntimeException e) {
        // Not fatal: pages not populated are faulted in by the writes that place them, only slower.
        populateError = e.getMessage();
        System.err.println("pagewire: populating destination RAM ahead of the stream failed, continuing without: " + e.getMessage());
    }

    /** Populates hinted chunks in region and chunk order as hints arrive; ends when told to stop. */
    private void populateHinted() {
        try {
            while (!stopPopulating) {
                int region = -1;
                long chunk = -1;
                synchronized (hintLock) {
                    for (int r = 0; r < regions.size() && region < 0; r++) {
                        long c = wantedChunks[r] == null ? -1 : wantedChunks[r].nextSetBit(0);
                        if (c >= 0) {
                            region = r;
                            chunk = c;
                            wantedChunks[r].clear((int) c);
                        }
                    }
                    if (region < 0) {
                        hintLock.wait(100);
                        continue;
                    }
                }
                GuestRegion r = regions.get(region);
                long chunkPages = hintChunkPages[region];
                long first = chunk * chunkPages;
                r.populate(first, Math.min(chunkPages, r.pageCount() - first));
            }
        } catch (RuntimeException e) {
            populateFailed(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Records a population hint from the source: "REGION CHUNK_PAGES FIRST_CHUNK HEX". */
    private void hint(String args) {
        String[] a = args.split(" ");
        if (a.length != 4) {
            throw new IllegalArgumentException("malformed population hint: " + args);
        }
        int region = Integer.parseInt(a[0]);
        long chunkPages = Long.parseLong(a[1]);
        long first = Long.parseLong(a[2]);
        byte[] bits = java.util.HexFormat.of().parseHex(a[3]);
        if (region < 0 || region >= regions.size() || chunkPages < 1 || first < 0) {
            throw new IllegalArgumentException("population hint out of range: " + args);
        }
        long chunks = (regions.get(region).pageCount() + chunkPages - 1) / chunkPages;
        synchronized (hintLock) {
            if (wantedChunks[region] == null) {
                wantedChunks[region] = new java.util.BitSet((int) chunks);
                hintChunkPages[region] = chunkPages;
            } else if (hintChunkPages[region] != chunkPages) {
                throw new IllegalArgumentException("population hints with different chunk sizes: " + args);
            }
            for (long i = 0; i < 8L * bits.length && first + i < chunks; i++) {
                if ((bits[(int) (i >>> 3)] & (1 << (i & 7))) != 0) {
                    wantedChunks[region].set((int) (first + i));
                }
            }
            hintLock.notifyAll();
        }
    }

    /** @return the verification result ("verified", "mismatch ...", or null when the source asked none) */
    public String verification() {
        return verification;
    }

    /** @return why populating ahead of the stream failed, or null */
    public String populateError() {
        return populateError;
    }

    /** @return statistics */
    public MigrationStats stats() {
        return stats;
    }

    /**
     * Accepts one source and receives its migration.
     *
     * @return statistics: completed, or failed with the reason
     */
    public MigrationStats receive(Listener listener, Duration acceptTimeout) throws InterruptedException {
        CompletableFuture<Connection> self = new CompletableFuture<>();
        CountDownLatch finished = new CountDownLatch(1);
        AtomicReference<TransportException> failure = new AtomicReference<>();
        MessageHandler handler = new MessageHandler() {
            @Override
            public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
                accounted[regionId].markRangeAtomic(firstPage, pageCount);
                hasData[regionId].markRangeAtomic(firstPage, pageCount);
                stats.addNormal(pageCount, pageCount * regions.get(regionId).pageSize());
            }

            @Override
            public void onZeroRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
                zeroWherePreviouslyWritten(regionId, firstPage, pageCount);
                accounted[regionId].markRangeAtomic(firstPage, pageCount);
                stats.addDuplicate(pageCount);
            }

            @Override
            public void onSkipRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
                accounted[regionId].markRangeAtomic(firstPage, pageCount);
                stats.addSkipped(pageCount);
            }

            @Override
            public void onRoundEnd(long round) {
                rounds.incrementAndGet();
                stats.round(0, 0);
            }

            @Override
            public void onComplete() {
                Connection c = self.join();
                String missing = firstMissingPage();
                if (missing != null) {
                    stats.failed(missing);
                    c.abort(missing);
                    finished.countDown();
                    return;
                }
                c.urgent().sendComplete();
                stats.status(MigrationStats.Status.COMPLETED);
                stats.end();
            }

            @Override
            public void onControl(LaneKind lane, MemorySegment payload) {
                String text = new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (text.startsWith(Protocol.VERIFY)) {
                    verification = verify(text.substring(Protocol.VERIFY.length()).strip());
                    self.join().urgent().sendControl(MemorySegment.ofArray(verification.getBytes(StandardCharsets.UTF_8)));
                    finished.countDown();
                } else if (text.equals(Protocol.DONE)) {
                    finished.countDown();
                } else if (text.startsWith(Protocol.POPULATE + " ")) {
                    if (populateMode == Populate.HINTED) {
                        hint(text.substring(Protocol.POPULATE.length() + 1));
                    }
                }
            }

            @Override
            public void onError(TransportException error) {
                failure.compareAndSet(null, error);
                stats.failed(error.getMessage());
                finished.countDown();
            }
        };
        Connection c = listener.accept(handler, acceptTimeout);
        self.complete(c);
        stats.status(MigrationStats.Status.ACTIVE);
        stats.setupDone();
        try (c) {
            finished.await();
            stats.transferred(c.stats().bytesReceived());
            return stats;
        } finally {
            stopPopulating = true;
        }
    }

    /** Pages that held data from an earlier round and are zero now must be zeroed here. */
    private void zeroWherePreviouslyWritten(int regionId, long firstPage, long count) {
        DirtyBitmap data = hasData[regionId];
        GuestRegion r = regions.get(regionId);
        long end = firstPage + count;
        // nextDirty / nextClean return 'end' when there is none.
        for (long p = data.nextDirty(firstPage, end); p < end; ) {
            long stop = data.nextClean(p, end);
            r.pages(p, stop - p).fill((byte) 0);
            data.clearRangeAtomic(p, stop - p);
            p = data.nextDirty(stop, end);
        }
    }

    private String firstMissingPage() {
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            long got = accounted[i].count();
            if (got != r.pageCount()) {
                long first = accounted[i].nextClean(0, r.pageCount());
                return "incomplete migration: region '" + r.name() + "' has " + (r.pageCount() - got) + " of " + r.pageCount()
                        + " pages never sent (first: page " + first + ")";
            }
        }
        return null;
    }

    private String verify(String crcs) {
        String[] expected = crcs.isEmpty() ? new String[0] : crcs.split(" ");
        if (expected.length != regions.size()) {
            return Protocol.MISMATCH + ": the source sent " + expected.length + " checksums for " + regions.size() + " regions";
        }
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            String actual = Long.toHexString(Checksums.crc32c(r.memory().asSlice(0, r.sizeBytes())));
            if (!actual.equals(expected[i])) {
                return Protocol.MISMATCH + ": region '" + r.name() + "' has CRC32C " + actual + " here, " + expected[i] + " at the source";
            }
        }
        return Protocol.VERIFIED;
    }

    @Override
    public void close() throws InterruptedException {
        stopPopulating = true;
        synchronized (hintLock) {
            hintLock.notifyAll();
        }
        if (populator != null) {
            populator.join(TimeUnit.SECONDS.toMillis(30));
        }
        arena.close();
    }
}
