package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.lang.foreign.Arena;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Run in a child JVM by {@link DisniUnavailableTest}: {@code connect} tries {@code rdma://} over
 * the real (DiSNi) fabric and prints the error; {@code sim} moves a few pages over the simulated
 * fabric (to show the module works without DiSNi).
 */
public final class ChildMain {
    private ChildMain() {
    }

    public static void main(String[] args) throws Exception {
        try (Arena arena = Arena.ofShared()) {
            RamLayout layout = RamLayout.of(RamRegion.of("pc.ram", arena.allocate(1 << 20, 4096), 4096));
            TransportContext ctx = new TransportContext().layout(layout);
            if (args[0].equals("connect")) {
                try {
                    Transports.connect("rdma://127.0.0.1:4444", ctx).close();
                    System.out.println("CONNECTED");
                } catch (TransportException e) {
                    System.out.println("KIND " + e.kind());
                    System.out.println("MESSAGE " + e.getMessage());
                }
                return;
            }
            try (Listener l = Transports.listen("rdma://127.0.0.1:0", new TransportContext().layout(layout))) {
                RamLayout src = RamLayout.of(RamRegion.of("pc.ram", arena.allocate(1 << 20, 4096).fill((byte) 7), 4096));
                CompletableFuture<Connection> s = CompletableFuture.supplyAsync(() -> Transports.connect(l.uri(), new TransportContext().layout(src)));
                try (Connection d = l.accept(null, Duration.ofSeconds(30)); Connection c = s.get(30, TimeUnit.SECONDS)) {
                    c.background().sendPages(0, 0, 256);
                    c.background().flush();
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                    while (d.stats().pagesReceived() < 256 && System.nanoTime() < deadline) {
                        java.util.concurrent.locks.LockSupport.parkNanos(1_000_000); // polling a counter with a deadline
                    }
                    System.out.println("SIM " + d.stats().pagesReceived() + " " + layout.region(0).memory().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 12345));
                }
            }
        }
    }
}
