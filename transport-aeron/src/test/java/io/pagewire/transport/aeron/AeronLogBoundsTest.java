package io.pagewire.transport.aeron;

import io.aeron.AeronCounters;
import io.aeron.ExclusivePublication;
import io.aeron.driver.status.SystemCounterDescriptor;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.AckingHandler;
import io.pagewire.transport.spi.tck.Closer;
import io.pagewire.transport.spi.tck.TckRam;
import org.agrona.concurrent.status.CountersReader;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Aeron's media driver sizes an image's log buffers from the sender's SETUP (term length up to 1 GiB, three
 * terms) before pagewire reads a byte. The listener rejects a stream on its listening endpoint whose term length
 * exceeds a handshake stream's, as soon as the image appears; the embedded drivers take at most
 * {@link Drivers#STREAM_SESSION_LIMIT} senders per stream.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class AeronLogBoundsTest {
    private static final long MIB = 1 << 20;
    private final Closer cleanup = new Closer();

    @AfterEach
    void closeAll() throws Exception {
        cleanup.closeAll();
    }

    private <T extends AutoCloseable> T later(T c) {
        return cleanup.add(c);
    }

    /** @return the driver's system counter {@code d} */
    private static long systemCounter(CountersReader counters, SystemCounterDescriptor d) {
        long[] value = {-1};
        counters.forEach((counterId, typeId, key, label) -> {
            if (typeId == AeronCounters.DRIVER_SYSTEM_COUNTER_TYPE_ID && key.getInt(0) == d.id()) {
                value[0] = counters.getCounterValue(counterId);
            }
        });
        assertTrue(value[0] >= 0, "no system counter " + d);
        return value[0];
    }

    private static void await(LongSupplier value, long atLeast, String what) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (value.getAsLong() < atLeast) {
            assertTrue(System.nanoTime() < deadline, what + " within 20 s (at " + value.getAsLong() + ", expected " + atLeast + ")");
            java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(2)); // polling a counter with a deadline
        }
    }

    @Test
    void aStreamWithAnOversizedTermLengthIsRejectedAtOnceAndTheListenerGoesOn() throws Exception {
        TckRam src = later(TckRam.of(4 * MIB));
        TckRam dst = later(TckRam.of(4 * MIB));
        TransportContext ctx = new TransportContext().layout(dst.layout()).connectTimeoutNs(TimeUnit.SECONDS.toNanos(10));
        Listener l = later(Transports.listen("aeron:udp?endpoint=127.0.0.1:0", ctx));
        AeronListener listener = (AeronListener) l;
        int port = AeronOptions.parse(TransportUri.parse(l.uri()), false).port();
        Drivers.Lease lease = later(Drivers.embedded(Drivers.Role.URGENT)); // the listener's driver in this JVM
        CountersReader counters = lease.aeron().countersReader();
        long rejectedBefore = systemCounter(counters, SystemCounterDescriptor.IMAGES_REJECTED);

        // A stranger: no pagewire byte at all, only a SETUP naming a 64 MiB term (a 192 MiB log at the destination).
        ExclusivePublication big = later(lease.aeron().addExclusivePublication(
                "aeron:udp?endpoint=127.0.0.1:" + port + "|term-length=64m|sparse=true", AeronOptions.DEFAULT_STREAM_ID));
        await(listener::rejectedForTermLength, 1, "the listener rejects the oversized stream");
        await(() -> systemCounter(counters, SystemCounterDescriptor.IMAGES_REJECTED), rejectedBefore + 1,
                "the driver counts the image rejected");
        assertEquals(1, listener.rejectedForTermLength());
        assertTrue(big.termBufferLength() > AeronListener.MAX_HANDSHAKE_TERM_LENGTH);
        big.close(); // the stranger leaves (one that stays gets a new image about every 12 s, each rejected at once)
        long rejected = listener.rejectedForTermLength();

        // The listener still serves a source (whose handshake stream has the handshake term length).
        AckingHandler s = new AckingHandler(false);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(
                () -> Transports.connect(l.uri(), new TransportContext().layout(src.layout()).handler(s)), r -> Thread.ofPlatform().daemon().start(r));
        later(l.accept(new AckingHandler(true), Duration.ofSeconds(30)));
        later(source.get(30, TimeUnit.SECONDS));
        assertEquals(rejected, listener.rejectedForTermLength(), "a real source's stream is not rejected");
    }

    /**
     * The embedded drivers take at most {@link Drivers#STREAM_SESSION_LIMIT} senders on one stream of one endpoint:
     * with that many images up, one more sender gets none while they last.
     */
    @Test
    void theDriverTakesAtMostTheSessionLimitOfSendersPerStream() {
        Drivers.Lease lease = later(Drivers.embedded(Drivers.Role.URGENT));
        int stream = AeronTransportProvider.randomStreamId();
        io.aeron.Subscription sub = later(lease.aeron().addSubscription("aeron:udp?endpoint=127.0.0.1:0", stream));
        int port = Await.boundPort(sub, "the test stream", System.nanoTime() + TimeUnit.SECONDS.toNanos(10));
        String channel = "aeron:udp?endpoint=127.0.0.1:" + port + "|term-length=64k";
        java.util.List<ExclusivePublication> senders = new java.util.ArrayList<>();
        for (int i = 0; i < Drivers.STREAM_SESSION_LIMIT; i++) {
            senders.add(later(lease.aeron().addExclusivePublication(channel, stream)));
        }
        await(sub::imageCount, Drivers.STREAM_SESSION_LIMIT, "every sender up to the limit gets an image");
        ExclusivePublication oneMore = later(lease.aeron().addExclusivePublication(channel, stream));
        // Its SETUP goes out every few milliseconds; the driver ignores each while the limit is reached.
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        while (System.nanoTime() < until) {
            assertEquals(Drivers.STREAM_SESSION_LIMIT, sub.imageCount(), "images on one stream");
            assertTrue(!oneMore.isConnected(), "a sender over the limit got an image");
            java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
        }
        assertEquals(Drivers.STREAM_SESSION_LIMIT, senders.stream().filter(ExclusivePublication::isConnected).count());
    }
}
