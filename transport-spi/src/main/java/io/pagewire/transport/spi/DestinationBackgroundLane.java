package io.pagewire.transport.spi;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * The destination's background lane, the same for every transport: the destination sends
 * nothing on it, so every send fails with an {@link IllegalStateException} that says where the
 * message belongs; {@link #flush()} only checks that the connection is open.
 */
public final class DestinationBackgroundLane implements Lane {
    private final Runnable ensureOpen;

    /** @param ensureOpen throws the connection's failure (or CLOSED) when it is not open */
    public DestinationBackgroundLane(Runnable ensureOpen) {
        this.ensureOpen = Objects.requireNonNull(ensureOpen, "ensureOpen");
    }

    @Override
    public LaneKind kind() {
        return LaneKind.BACKGROUND;
    }

    private static IllegalStateException wrongSide() {
        return new IllegalStateException("the destination sends nothing on the background lane; use urgent() for page requests,"
                + " control and the completion acknowledgement");
    }

    @Override
    public long offerPages(int regionId, long firstPage, long pageCount) {
        throw wrongSide();
    }

    @Override
    public void sendPages(int regionId, long firstPage, long pageCount) {
        throw wrongSide();
    }

    @Override
    public void sendZeroRun(int regionId, long firstPage, long pageCount) {
        throw wrongSide();
    }

    @Override
    public void sendSkipRun(int regionId, long firstPage, long pageCount) {
        throw wrongSide();
    }

    @Override
    public void sendRoundEnd(long round) {
        throw wrongSide();
    }

    @Override
    public void sendPageRequest(int regionId, long firstPage, int pageCount) {
        throw wrongSide();
    }

    @Override
    public void sendControl(MemorySegment payload) {
        throw wrongSide();
    }

    @Override
    public void sendComplete() {
        throw wrongSide();
    }

    @Override
    public void flush() {
        ensureOpen.run();
    }
}
