package io.pagewire.transport.spi;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * Counters of one connection. Updated by transport threads, read by anyone (values are
 * individually current; a set of reads is not a consistent snapshot).
 */
public final class ConnectionStats {
    private final LongAdder pagesSent = new LongAdder();
    private final LongAdder pagesReceived = new LongAdder();
    private final LongAdder bytesSent = new LongAdder();
    private final LongAdder bytesReceived = new LongAdder();
    private final LongAdder urgentMessagesSent = new LongAdder();
    private final LongAdder urgentMessagesReceived = new LongAdder();
    private final AtomicLong backgroundPendingBytes = new AtomicLong();
    private final AtomicLong backgroundPendingHighWaterBytes = new AtomicLong();
    private final LongAdder backPressureEvents = new LongAdder();
    private final long backgroundPendingLimitBytes;

    /** @param limitBytes the transport's bound on offered, unsent background page data */
    public ConnectionStats(long limitBytes) {
        this.backgroundPendingLimitBytes = limitBytes;
    }

    /** @return pages sent (both lanes) */
    public long pagesSent() {
        return pagesSent.sum();
    }

    /** @return pages received and placed (both lanes) */
    public long pagesReceived() {
        return pagesReceived.sum();
    }

    /** @return bytes written to the network, headers included */
    public long bytesSent() {
        return bytesSent.sum();
    }

    /** @return bytes read from the network, headers included */
    public long bytesReceived() {
        return bytesReceived.sum();
    }

    /** @return urgent messages sent */
    public long urgentMessagesSent() {
        return urgentMessagesSent.sum();
    }

    /** @return urgent messages received */
    public long urgentMessagesReceived() {
        return urgentMessagesReceived.sum();
    }

    /** @return page bytes offered on the background lane and not yet handed to the network */
    public long backgroundPendingBytes() {
        return backgroundPendingBytes.get();
    }

    /** @return the most {@link #backgroundPendingBytes()} ever reached */
    public long backgroundPendingHighWaterBytes() {
        return backgroundPendingHighWaterBytes.get();
    }

    /** @return the bound on {@link #backgroundPendingBytes()} */
    public long backgroundPendingLimitBytes() {
        return backgroundPendingLimitBytes;
    }

    /** @return how many offers were refused with {@link Lane#BACK_PRESSURED} */
    public long backPressureEvents() {
        return backPressureEvents.sum();
    }

    // ---- updates, for transports ----

    /** Records pages and bytes sent. */
    public void onSent(long pages, long bytes, boolean urgent) {
        pagesSent.add(pages);
        bytesSent.add(bytes);
        if (urgent) {
            urgentMessagesSent.increment();
        }
    }

    /** Records pages and bytes received. */
    public void onReceived(long pages, long bytes, boolean urgent) {
        pagesReceived.add(pages);
        bytesReceived.add(bytes);
        if (urgent) {
            urgentMessagesReceived.increment();
        }
    }

    /** Adds to (or, negative, takes from) the pending background bytes, tracking the high-water mark. */
    public void addPending(long delta) {
        long now = backgroundPendingBytes.addAndGet(delta);
        if (delta > 0) {
            backgroundPendingHighWaterBytes.accumulateAndGet(now, Math::max);
        }
    }

    /** Records a refused offer. */
    public void onBackPressure() {
        backPressureEvents.increment();
    }

    @Override
    public String toString() {
        return "pagesSent=" + pagesSent() + " pagesReceived=" + pagesReceived() + " bytesSent=" + bytesSent()
                + " bytesReceived=" + bytesReceived() + " urgentSent=" + urgentMessagesSent() + " urgentReceived="
                + urgentMessagesReceived() + " pendingHighWater=" + backgroundPendingHighWaterBytes() + "/" + backgroundPendingLimitBytes
                + " backPressureEvents=" + backPressureEvents();
    }
}
