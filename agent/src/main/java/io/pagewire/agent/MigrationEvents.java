package io.pagewire.agent;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * JDK Flight Recorder events of a migration, on both sides (docs/observability.md lists every
 * event and field). {@code jfr print --events 'pagewire.*' rec.jfr} or JDK Mission Control shows
 * a migration: its phases as spans, every round, the downtime, postcopy faults, and with the
 * transport's events ({@code pagewire.ConnectionFailed}, {@code pagewire.BackPressureStall})
 * what the connection did.
 */
public final class MigrationEvents {
    private MigrationEvents() {
    }

    /** One phase of a migration (QEMU's status names), from entering it to leaving it. */
    @Name("pagewire.MigrationPhase")
    @Label("Migration Phase")
    @Category({"pagewire", "Migration"})
    @Description("Time spent in one migration status (setup, active, device, postcopy-active, ...); the event's duration is the phase")
    @StackTrace(false)
    public static final class Phase extends Event {
        @Label("Side")
        @Description("source or destination")
        public String side;
        @Label("Phase")
        public String phase;
        @Label("Next")
        @Description("the status that ended this phase")
        public String next;
    }

    /** A precopy round (or the final round inside the downtime), recorded when it ends. */
    @Name("pagewire.MigrationRound")
    @Label("Migration Round")
    @Category({"pagewire", "Migration"})
    @StackTrace(false)
    public static final class Round extends Event {
        @Label("Side")
        public String side;
        @Label("Round")
        public long round;
        @Label("Pages")
        public long pages;
        @Label("Bytes Sent")
        @DataAmount
        public long bytes;
        @Label("Round Time")
        @Timespan
        public long roundTime;
        @Label("Dirty Log Collect")
        @Timespan
        @Description("collecting the dirty log before the round; -1 when none")
        public long collectTime;
        @Label("Bandwidth")
        @DataAmount(DataAmount.BYTES)
        @Description("bytes per second estimated after the round")
        public long bandwidth;
        @Label("Expected Downtime")
        @Timespan
        @Description("expected downtime computed before the round; -1 when none")
        public long expectedDowntime;
    }

    /** The switchover: the guest was paused for this long. */
    @Name("pagewire.Downtime")
    @Label("Downtime")
    @Category({"pagewire", "Migration"})
    @StackTrace(false)
    public static final class Downtime extends Event {
        @Label("Side")
        public String side;
        @Label("Downtime")
        @Timespan
        public long downtime;
        @Label("Final Round")
        @Timespan
        public long finalRound;
        @Label("Completion")
        @Timespan
        @Description("after the final round: completion handshake, device state")
        public long completion;
    }

    /** The migration failed or was cancelled. */
    @Name("pagewire.MigrationFailed")
    @Label("Migration Failed")
    @Category({"pagewire", "Migration"})
    @StackTrace(false)
    public static final class Failed extends Event {
        @Label("Side")
        public String side;
        @Label("Status")
        public String status;
        @Label("Transport Failure Kind")
        public String kind;
        @Label("Reason")
        public String reason;
    }

    /**
     * A postcopy fault on the destination, from the vCPU's fault to its page being placed. Every
     * fault would flood a recording (tens of thousands per second), so a fault is recorded when its
     * latency reaches the threshold ({@code -Dpagewire.jfr.fault-threshold=1ms}, default 1 ms) or it
     * is the sampled one ({@code -Dpagewire.jfr.fault-sample=64}: one in 64; 0 = no sampling).
     */
    @Name("pagewire.PostcopyFault")
    @Label("Postcopy Fault")
    @Category({"pagewire", "Migration"})
    @StackTrace(false)
    public static final class PostcopyFault extends Event {
        @Label("Latency")
        @Timespan
        public long latency;
        @Label("Region")
        public int regionId;
        @Label("Page")
        @Description("page index in the region")
        public long page;
        @Label("Sampled")
        @Description("recorded as the 1-in-N sample rather than for reaching the threshold")
        public boolean sampled;
    }

    static final long FAULT_THRESHOLD_NS = io.pagewire.transport.spi.Units.parseDuration(
            System.getProperty("pagewire.jfr.fault-threshold", "1ms"), "ms").toNanos();
    static final long FAULT_SAMPLE = Long.getLong("pagewire.jfr.fault-sample", 64);

    /** Records a resolved postcopy fault when a recording wants it (threshold or sample). */
    static void postcopyFault(long latencyNs, int regionId, long page, long faultNumber) {
        PostcopyFault e = new PostcopyFault();
        if (!e.isEnabled()) {
            return;
        }
        boolean sampled = FAULT_SAMPLE > 0 && faultNumber % FAULT_SAMPLE == 0;
        if (latencyNs >= FAULT_THRESHOLD_NS || sampled) {
            e.latency = latencyNs;
            e.regionId = regionId;
            e.page = page;
            e.sampled = latencyNs < FAULT_THRESHOLD_NS;
            e.commit();
        }
    }
}
