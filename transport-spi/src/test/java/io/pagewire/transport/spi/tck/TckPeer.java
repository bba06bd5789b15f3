package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The far end of the TCK's two-process cases, run in a child JVM so the test can kill it
 * (SIGKILL) or freeze it (SIGSTOP) mid-transfer.
 * <pre>
 *   TckPeer source URI BYTES PEER_TIMEOUT_MS HEARTBEAT_MS   connects, prints CONNECTED, sends rounds for ever
 *   TckPeer dest   URI BYTES PEER_TIMEOUT_MS HEARTBEAT_MS   listens, prints LISTENING uri, accepts, prints ACCEPTED,
 *                                                           ROUND r at each round end, sends one page request and
 *                                                           prints ANSWERED when its page arrives on the urgent lane
 * The source answers page requests on the urgent lane.
 * </pre>
 * Exits 3 when its own connection fails (which the tests do not wait for: they kill it).
 */
public final class TckPeer {
    private TckPeer() {
    }

    public static void main(String[] args) throws Exception {
        String role = args[0];
        String uri = args[1];
        long bytes = Long.parseLong(args[2]);
        long peerTimeoutMs = Long.parseLong(args[3]);
        long heartbeatMs = Long.parseLong(args[4]);
        CountDownLatch failed = new CountDownLatch(1);
        MessageHandler handler = new MessageHandler() {
            private volatile Connection self;

            @Override
            public void onOpen(Connection connection) {
                self = connection;
            }

            @Override
            public void onError(TransportException error) {
                System.err.println("TckPeer " + role + ": " + error);
                failed.countDown();
            }

            @Override
            public void onPageRequest(int regionId, long firstPage, int pageCount) {
                self.urgent().sendPages(regionId, firstPage, pageCount);
            }

            @Override
            public void onPages(io.pagewire.transport.spi.LaneKind lane, int regionId, long firstPage, int pageCount) {
                if (lane == io.pagewire.transport.spi.LaneKind.URGENT) {
                    System.out.println("ANSWERED " + firstPage);
                    System.out.flush();
                }
            }

            @Override
            public void onRoundEnd(long round) {
                System.out.println("ROUND " + round);
                System.out.flush();
            }
        };
        try (TckRam ram = TckRam.of(bytes)) {
            TransportContext ctx = new TransportContext().layout(ram.layout())
                    .peerTimeoutNs(TimeUnit.MILLISECONDS.toNanos(peerTimeoutMs))
                    .heartbeatIntervalNs(TimeUnit.MILLISECONDS.toNanos(heartbeatMs));
            if (role.equals("source")) {
                ram.fillPattern(7, 10, 1);
                try (Connection c = Transports.connect(uri, ctx.handler(handler))) {
                    System.out.println("CONNECTED");
                    System.out.flush();
                    for (long round = 1; failed.getCount() > 0; round++) {
                        c.background().sendPages(0, 0, ram.pages(0));
                        c.background().sendRoundEnd(round);
                    }
                }
            } else {
                try (Listener l = Transports.listen(uri, ctx)) {
                    System.out.println("LISTENING " + l.uri());
                    System.out.flush();
                    try (Connection c = l.accept(handler, Duration.ofSeconds(60))) {
                        System.out.println("ACCEPTED " + c.peer());
                        System.out.flush();
                        c.urgent().sendPageRequest(0, 1, 1);
                        failed.await();
                    }
                }
            }
        }
        System.exit(3);
    }
}
