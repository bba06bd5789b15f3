package io.pagewire.agent.snapshot;

import io.pagewire.ramtracker.linux.Mappings;
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
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;

/**
 * The receiving end of a snapshot over a transport ({@code pagewire receive --snapshot FILE}): writes the pages a
 * {@link TransportSnapshotSink} sends into a snapshot file ({@link SnapshotFileWriter}), urgent copies as they
 * come on the urgent lane, and completes the file when the source's END has come and every page it counted has
 * arrived. Every field of every message is checked against the layout before a byte is written; a bad message
 * fails the connection, naming the value and the bound.
 */
public final class SnapshotReceiver implements AutoCloseable {
    private final List<SnapshotLayout.RegionSpec> regions;
    private final SnapshotFileWriter writer;
    private final Arena arena = Arena.ofShared();
    private final AtomicLong received = new AtomicLong();
    private final Object events = new Object();
    private long expected = -1;     // guarded by events
    private long zeroPages;         // guarded by events
    private long startEpochNs;      // guarded by events
    private boolean complete;       // guarded by events
    private TransportException lost; // guarded by events
    private RuntimeException bad;   // guarded by events

    /**
     * @param file the snapshot file to write
     * @param regions the regions expected (must match the source's)
     * @param storage slow-storage emulation for the file
     */
    public SnapshotReceiver(Path file, List<SnapshotLayout.RegionSpec> regions, StorageOptions storage) {
        this.regions = List.copyOf(regions);
        this.writer = SnapshotFileWriter.create(file, regions, storage);
    }

    /** @return a listener on {@code uri} with this snapshot's layout */
    public Listener listen(String uri) {
        List<RamRegion> rs = new ArrayList<>();
        for (SnapshotLayout.RegionSpec r : regions) {
            // Never touched: pages arrive as copies in control frames and go to the file.
            rs.add(RamRegion.of(r.name(), Mappings.mapAnonymous(r.sizeBytes(), true, arena), r.pageSize()));
        }
        return Transports.listen(uri, new TransportContext().layout(RamLayout.of(rs)));
    }

    /**
     * Accepts one source and writes its snapshot.
     *
     * @return pages with data written
     * @throws SnapshotException when the connection failed or sent something wrong (the file stays incomplete)
     */
    public long receive(Listener listener, Duration acceptTimeout) throws InterruptedException {
        try (Connection c = listener.accept(new Handler(), acceptTimeout)) {
            synchronized (events) {
                while (lost == null && bad == null && !(complete && expected >= 0 && received.get() >= expected)) {
                    events.wait(TimeUnit.SECONDS.toMillis(1));
                }
                if (bad != null) {
                    c.abort(bad.getMessage());
                    throw new SnapshotException("bad snapshot message from " + c.peer() + ": " + bad.getMessage(), bad);
                }
                if (lost != null && !(complete && received.get() >= expected && expected >= 0)) {
                    throw new SnapshotException("snapshot connection from " + c.peer() + " failed: " + lost.getMessage(), lost);
                }
                if (received.get() != expected) {
                    throw new SnapshotException("the source counted " + expected + " pages, " + received.get() + " arrived");
                }
            }
            writer.finish(new SnapshotSink.SnapshotSummary(received.get(), zeroPages, startEpochNs));
            c.urgent().sendComplete();
            return received.get();
        }
    }

    private final class Handler implements MessageHandler {
        @Override
        public void onControl(LaneKind lane, MemorySegment payload) {
            try {
                accept(payload);
            } catch (RuntimeException e) {
                synchronized (events) {
                    if (bad == null) {
                        bad = e;
                    }
                    events.notifyAll();
                }
            }
        }

        private void accept(MemorySegment m) {
            if (m.byteSize() < SnapshotMessages.HEADER || m.get(JAVA_INT_UNALIGNED, 0) != SnapshotMessages.MAGIC) {
                throw new IllegalArgumentException("control message of " + m.byteSize() + " bytes is not a snapshot message (no PWSS magic)");
            }
            short type = m.get(JAVA_SHORT_UNALIGNED, 4);
            if (type == SnapshotMessages.END) {
                if (m.byteSize() != SnapshotMessages.END_BYTES) {
                    throw new IllegalArgumentException("END of " + m.byteSize() + " bytes, expected " + SnapshotMessages.END_BYTES);
                }
                long data = m.get(JAVA_LONG_UNALIGNED, 8);
                if (data < 0) {
                    throw new IllegalArgumentException("END counts " + data + " pages");
                }
                synchronized (events) {
                    expected = data;
                    zeroPages = m.get(JAVA_LONG_UNALIGNED, 16);
                    startEpochNs = m.get(JAVA_LONG_UNALIGNED, 24);
                    events.notifyAll();
                }
                return;
            }
            if (type != SnapshotMessages.PAGES) {
                throw new IllegalArgumentException("snapshot message type " + type + " is not PAGES (1) or END (2)");
            }
            int region = Short.toUnsignedInt(m.get(JAVA_SHORT_UNALIGNED, 6));
            if (region >= regions.size()) {
                throw new IllegalArgumentException("region id " + region + " outside 0.." + (regions.size() - 1));
            }
            SnapshotLayout.RegionSpec r = regions.get(region);
            long first = m.get(JAVA_LONG_UNALIGNED, 8);
            int count = m.get(JAVA_INT_UNALIGNED, 16);
            long pages = r.sizeBytes() / r.pageSize();
            if (count < 1 || first < 0 || first > pages - count) {
                throw new IllegalArgumentException("pages [" + first + ", +" + count + ") outside region '" + r.name() + "' [0, " + pages + ")");
            }
            if (m.byteSize() != SnapshotMessages.HEADER + count * r.pageSize()) {
                throw new IllegalArgumentException("PAGES of " + count + " pages carries " + (m.byteSize() - SnapshotMessages.HEADER)
                        + " bytes, expected " + count * r.pageSize());
            }
            writer.pages(region, first, count, m.asSlice(SnapshotMessages.HEADER), false);
            received.addAndGet(count);
            synchronized (events) {
                events.notifyAll();
            }
        }

        @Override
        public void onComplete() {
            synchronized (events) {
                complete = true;
                events.notifyAll();
            }
        }

        @Override
        public void onClosed(TransportException failure) {
            synchronized (events) {
                if (failure != null && lost == null) {
                    lost = failure;
                }
                events.notifyAll();
            }
        }
    }

    /** Closes the file (incomplete unless {@link #receive} returned) and frees the layout's reservation. Idempotent. */
    @Override
    public void close() {
        try {
            writer.close();
        } finally {
            arena.close();
        }
    }
}
