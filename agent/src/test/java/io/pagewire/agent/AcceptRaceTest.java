package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.Transports;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A migration that is over before the thread that accepted it runs again (a loaded machine deschedules it):
 * the destination must still see it completed. Found by the hostile source (conformance/hostile_source.py,
 * seed 404 case 2183 under load): {@code receive} set the status ACTIVE after {@code accept} returned, over
 * the COMPLETED the transport's threads had set meanwhile, and then waited for ever for an end it had missed.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class AcceptRaceTest {
    private static final long RAM = 4L << 20;

    @Test
    void aMigrationOverBeforeAcceptReturnsIsReceivedAsCompleted() throws Exception {
        try (GuestRam dstRam = GuestRam.create(); GuestRam srcRam = GuestRam.create()) {
            dstRam.open(RegionSpec.anonymous("pc.ram", RAM));
            srcRam.open(RegionSpec.anonymous("pc.ram", RAM));
            try (DestinationMigration dst = new DestinationMigration(dstRam); Listener real = dst.listen(dstRam, "tcp://127.0.0.1:0")) {
                CountDownLatch acknowledged = new CountDownLatch(1);
                AtomicReference<Connection> source = new AtomicReference<>();
                // accept() hands the connection over only once the source has had the acknowledgement and closed, and
                // the destination's side of it has ended: the accepting thread "ran again" after everything happened.
                Listener late = new Listener() {
                    @Override
                    public String uri() {
                        return real.uri();
                    }

                    @Override
                    public Connection accept(MessageHandler handler, Duration timeout) {
                        Connection c = real.accept(handler, timeout);
                        try {
                            assertTrue(acknowledged.await(30, TimeUnit.SECONDS), "the source never had its acknowledgement");
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                            throw new AssertionError(e);
                        }
                        source.get().close();
                        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                        while (!c.isClosed() && System.nanoTime() < until) {
                            Thread.onSpinWait();
                        }
                        assertTrue(c.isClosed(), "the destination's connection did not end after the source closed");
                        return c;
                    }

                    @Override
                    public void close() {
                        real.close();
                    }
                };
                CompletableFuture<MigrationStats> received = CompletableFuture.supplyAsync(() -> {
                    try {
                        return dst.receive(late, Duration.ofSeconds(30));
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException(e);
                    }
                });
                Connection s = Transports.connect(real.uri(), new TransportContext().layout(DestinationMigration.layout(srcRam))
                        .handler(new MessageHandler() {
                            @Override
                            public void onComplete() {
                                acknowledged.countDown();
                            }
                        }));
                source.set(s);
                s.background().sendZeroRun(0, 0, RAM / io.pagewire.ramtracker.linux.Linux.basePageSize());
                s.background().sendComplete();
                MigrationStats stats = received.get(30, TimeUnit.SECONDS);
                assertEquals(MigrationStats.Status.COMPLETED, stats.status(), "ended: " + stats.errorDesc());
            }
        }
    }
}
