package io.pagewire.transport.aeron;

import org.agrona.concurrent.IdleStrategy;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * The idle strategy of this transport's threads and embedded drivers: a few spins and yields, then short parks
 * while the lane they serve is busy in this process ("hot"), and longer parks once it has been quiet for a while,
 * so an idle connection costs little CPU. A park's length is the latency it may add at that hop; urgent threads
 * lower their timer slack ({@link io.pagewire.linux.ThreadTuning#timerSlack}) so the kernel keeps to it.
 *
 * <p>Hotness is a process-wide {@link Activity} per lane kind, touched by the code that sends and receives real
 * traffic (heartbeats do not count), because the embedded drivers are shared by every connection of the process:
 * a page request sent by one connection makes the driver that will carry its answer attentive too. A driver's own
 * housekeeping (status messages, heartbeats, about 20 times a second) cannot tell it that.
 *
 * <p>System properties (read once): {@code pagewire.aeron.urgent.park-us} (default 50),
 * {@code pagewire.aeron.urgent.idle-park-us} (default 500), {@code pagewire.aeron.bulk.park-us} (default 50),
 * {@code pagewire.aeron.bulk.idle-park-us} (default 1000), {@code pagewire.aeron.hot-ms} (how long after the last
 * message parks stay short, default 100). Not thread-safe: one instance per thread.
 */
final class ActivityIdleStrategy implements IdleStrategy {
    private static final long HOT_NS = TimeUnit.MILLISECONDS.toNanos(Drivers.longProperty("pagewire.aeron.hot-ms", 100, 0, 3_600_000));
    private static final int SPINS = 20;
    private static final int YIELDS = 5;

    /** When a lane kind last carried traffic in this process. */
    static final class Activity {
        final String name;
        final long shortParkNs;
        final long quietParkNs;
        private volatile long lastNs = System.nanoTime() - HOT_NS; // plain volatile: a stale read only costs a park

        Activity(String name, long shortParkNs, long quietParkNs) {
            this.name = name;
            this.shortParkNs = shortParkNs;
            this.quietParkNs = quietParkNs;
        }

        /** Traffic now: threads and the driver of this lane kind park briefly for a while. */
        void touch() {
            lastNs = System.nanoTime();
        }

        long parkNs() {
            return System.nanoTime() - lastNs < HOT_NS ? shortParkNs : quietParkNs;
        }
    }

    /** Urgent lanes and the urgent driver. */
    static final Activity URGENT = new Activity("urgent",
            TimeUnit.MICROSECONDS.toNanos(Drivers.longProperty("pagewire.aeron.urgent.park-us", 50, 1, 10_000)),
            TimeUnit.MICROSECONDS.toNanos(Drivers.longProperty("pagewire.aeron.urgent.idle-park-us", 500, 1, 100_000)));
    /** Background lanes and the bulk driver. */
    static final Activity BULK = new Activity("bulk",
            TimeUnit.MICROSECONDS.toNanos(Drivers.longProperty("pagewire.aeron.bulk.park-us", 50, 1, 10_000)),
            TimeUnit.MICROSECONDS.toNanos(Drivers.longProperty("pagewire.aeron.bulk.idle-park-us", 1000, 1, 100_000)));

    private final Activity activity;
    private final Activity also; // a second lane kind this thread serves (the bulk driver may carry urgent streams), or null
    private int spins;
    private int yields;

    ActivityIdleStrategy(Activity activity) {
        this(activity, null);
    }

    /** A strategy for a thread that serves two lane kinds: it parks as briefly as the busier one needs. */
    ActivityIdleStrategy(Activity activity, Activity also) {
        this.activity = activity;
        this.also = also;
    }

    @Override
    public void idle(int workCount) {
        if (workCount > 0) {
            reset();
        } else {
            idle();
        }
    }

    @Override
    public void idle() {
        if (spins < SPINS) {
            spins++;
            Thread.onSpinWait();
        } else if (yields < YIELDS) {
            yields++;
            Thread.yield();
        } else {
            LockSupport.parkNanos(also == null ? activity.parkNs() : Math.min(activity.parkNs(), also.parkNs()));
        }
    }

    @Override
    public void reset() {
        spins = 0;
        yields = 0;
    }

    @Override
    public String alias() {
        return "pagewire-" + activity.name;
    }
}
