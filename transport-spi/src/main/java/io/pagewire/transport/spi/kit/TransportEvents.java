package io.pagewire.transport.spi.kit;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Threshold;

/**
 * JDK Flight Recorder events of the transports (docs/observability.md lists every event). The
 * Panama sockets bypass the JDK's own socket events, so these are the transports' only view in a
 * recording. Both are cheap when no recording runs: {@code isEnabled()} is checked first.
 */
public final class TransportEvents {
    private TransportEvents() {
    }

    /** A connection failed: the first failure, once per connection, with where it came from. */
    @Name("pagewire.ConnectionFailed")
    @Label("Connection Failed")
    @Category({"pagewire", "Transport"})
    @Description("A transport connection failed (first failure only); origin says who caused it")
    @StackTrace(false)
    public static final class ConnectionFailed extends Event {
        @Label("Role")
        public String role;
        @Label("Peer")
        public String peer;
        @Label("Kind")
        @Description("TransportException.Kind")
        public String kind;
        @Label("Origin")
        @Description("LOCAL, PEER or APPLICATION")
        public String origin;
        @Label("Message")
        public String message;
    }

    /** The background lane was full and a sender waited for room (back pressure from the peer or the link). */
    @Name("pagewire.BackPressureStall")
    @Label("Back-Pressure Stall")
    @Category({"pagewire", "Transport"})
    @Description("A sendPages call waited for the background lane to have room; the event's duration is the wait")
    @Threshold("1 ms")
    @StackTrace(false)
    public static final class BackPressureStall extends Event {
        @Label("Peer")
        public String peer;
        @Label("Region")
        public int regionId;
        @Label("First Page")
        public long firstPage;
    }

    static void connectionFailed(String role, String peer, String kind, String origin, String message) {
        ConnectionFailed e = new ConnectionFailed();
        if (e.isEnabled()) {
            e.role = role;
            e.peer = peer;
            e.kind = kind;
            e.origin = origin;
            e.message = message;
            e.commit();
        }
    }
}
