package io.pagewire.agent.snapshot;

import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Lane;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Sends a snapshot over any transport to a {@code pagewire receive --snapshot FILE} ({@link SnapshotReceiver}),
 * which writes the same file format. Faulted copies go on the urgent lane, so they never wait behind background
 * pages queued in the transport; background copies on the background lane (one producer at a time, so the writer
 * threads take turns). Pages travel in control frames ({@link SnapshotMessages}): at most
 * {@code (64 KiB - 24) / pageSize} pages each.
 */
public final class TransportSnapshotSink implements SnapshotSink {
    private static final ThreadLocal<MemorySegment> SCRATCH = ThreadLocal.withInitial(
            () -> Arena.ofAuto().allocate(Lane.MAX_CONTROL_BYTES, 4096));

    /** Set once, right after connecting. */
    private volatile Connection connection;
    private final long[] pageSizes;
    private final Object backgroundLock = new Object();
    private final CountDownLatch acknowledged = new CountDownLatch(1);
    private volatile TransportException failure;

    private TransportSnapshotSink(long[] pageSizes) {
        this.pageSizes = pageSizes;
    }

    /**
     * Connects to a receiver.
     *
     * @param uri the receiver's URI (tcp://, unix:, aeron:, ...)
     * @param regions the regions (names, sizes and page sizes must match the receiver's)
     * @return the sink
     */
    public static TransportSnapshotSink connect(String uri, List<GuestRegion> regions) {
        List<RamRegion> layout = new ArrayList<>();
        long[] sizes = new long[regions.size()];
        for (int i = 0; i < regions.size(); i++) {
            GuestRegion r = regions.get(i);
            if (r.pageSize() > Lane.MAX_CONTROL_BYTES - SnapshotMessages.HEADER) {
                throw new IllegalArgumentException("region '" + r.name() + "': pages of " + r.pageSize() + " bytes do not fit a control frame of "
                        + Lane.MAX_CONTROL_BYTES + " bytes; snapshot huge-page regions to a file: target");
            }
            sizes[i] = r.pageSize();
            // The transport never reads this memory: pages travel as copies in control frames.
            layout.add(RamRegion.of(r.name(), r.memory().asSlice(0, r.sizeBytes()), r.pageSize()));
        }
        TransportSnapshotSink sink = new TransportSnapshotSink(sizes);
        sink.connection = Transports.connect(uri, new TransportContext().layout(RamLayout.of(layout)).handler(sink.new Handler()));
        return sink;
    }

    /** Completion acknowledgement and failures from the receiver. */
    private final class Handler implements MessageHandler {
        @Override
        public void onComplete() {
            acknowledged.countDown();
        }

        @Override
        public void onError(TransportException error) {
            failure = error;
            acknowledged.countDown();
        }
    }

    @Override
    public void pages(int region, long firstPage, int count, MemorySegment data, boolean urgent) {
        TransportException f = failure;
        if (f != null) {
            throw new SnapshotException("the snapshot receiver " + connection.peer() + " failed: " + f.getMessage(), f);
        }
        long size = pageSizes[region];
        int perMessage = (int) ((Lane.MAX_CONTROL_BYTES - SnapshotMessages.HEADER) / size);
        MemorySegment m = SCRATCH.get();
        for (int done = 0; done < count; done += perMessage) {
            int n = Math.min(perMessage, count - done);
            SnapshotMessages.pagesHeader(m, region, firstPage + done, n);
            MemorySegment.copy(data, done * size, m, SnapshotMessages.HEADER, n * size);
            MemorySegment msg = m.asSlice(0, SnapshotMessages.HEADER + n * size);
            if (urgent) {
                connection.urgent().sendControl(msg);
            } else {
                synchronized (backgroundLock) {
                    connection.background().sendControl(msg);
                }
            }
        }
    }

    @Override
    public void finish(SnapshotSummary summary) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment end = a.allocate(SnapshotMessages.END_BYTES);
            SnapshotMessages.end(end, summary.dataPages(), summary.zeroPages(), summary.startEpochNs());
            synchronized (backgroundLock) {
                connection.background().sendControl(end);
                connection.background().sendComplete();
            }
        }
        try {
            if (!acknowledged.await(120, TimeUnit.SECONDS)) {
                throw new SnapshotException("the snapshot receiver " + connection.peer() + " did not confirm the snapshot within 120 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SnapshotException("interrupted waiting for the snapshot receiver", e);
        }
        if (failure != null) {
            throw new SnapshotException("the snapshot receiver " + connection.peer() + " failed: " + failure.getMessage(), failure);
        }
    }

    @Override
    public void close() {
        connection.close();
    }
}
