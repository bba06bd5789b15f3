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
 *   TckPeer dest   URI BYTES PEER_TIMEOUT_MS HEARTBEAT_MS   listens, prints LISTENING uri, accepts, prints ACCEPTED
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
            @Override
            public void onError(TransportException error) {
                System.err.println("TckPeer " + role + ": " + error);
                failed.countDown();
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
                        failed.await();
                    }
                }
            }
        }
        System.exit(3);
    }
}
