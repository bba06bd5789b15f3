package io.pagewire.perf.e2e;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;
import org.HdrHistogram.Histogram;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * The destination side of the end-to-end benchmarks, run in its own JVM by {@link TransportBench}.
 * Listens on a URI with RAM of a given size (touched up front, like a pre-populated destination),
 * accepts one source after another, and acknowledges completion. On the control message
 * {@code rtt <count> <gapMicros>} it sends that many page requests on the urgent lane, one at a
 * time, and replies with the round-trip histogram (HdrHistogram, compressed) as a control message.
 * <pre>  BenchDestination URI RAM_BYTES</pre>
 * The same loop serves a source on another host with {@code pagewire bench --serve --listen URI}.
 */
public final class BenchDestination {
    private BenchDestination() {
    }

    public static void main(String[] args) throws Exception {
        serveForever(args[0], Long.parseLong(args[1]));
    }

    /**
     * Listens on {@code uri} with {@code bytes} of RAM, prints {@code LISTENING <uri>} and serves one
     * source after another until the JVM ends (also {@code pagewire bench --serve}).
     */
    static void serveForever(String uri, long bytes) throws Exception {
        Arena arena = Arena.ofShared();
        MemorySegment ram = arena.allocate(bytes, 4096); // zeroed: every page touched before the run
        RamLayout layout = RamLayout.of(RamRegion.of("pc.ram", ram, 4096));
        try (Listener listener = Transports.listen(uri, new TransportContext().layout(layout))) {
            System.out.println("LISTENING " + listener.uri());
            System.out.flush();
            while (true) {
                try {
                    serve(listener, layout);
                } catch (TransportException e) {
                    // One source's failure (a refused handshake, a lost connection) ends its session, not the server.
                    System.err.println("destination: session failed, serving the next: " + e.getMessage());
                }
            }
        }
    }

    private static void serve(Listener listener, RamLayout layout) throws InterruptedException {
        AtomicReference<Connection> conn = new AtomicReference<>();
        Semaphore answered = new Semaphore(0);
        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<String> rttCommand = new AtomicReference<>();
        Semaphore commands = new Semaphore(0);
        MessageHandler handler = new MessageHandler() {
            @Override
            public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
                if (lane == LaneKind.URGENT) {
                    answered.release();
                }
            }

            @Override
            public void onControl(LaneKind lane, MemorySegment payload) {
                rttCommand.set(new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
                commands.release();
            }

            @Override
            public void onComplete() {
                conn.get().urgent().sendComplete();
                done.countDown();
            }

            @Override
            public void onError(TransportException error) {
                System.err.println("destination: " + error);
                done.countDown();
                commands.release();
            }
        };
        Connection c = listener.accept(handler, Duration.ofDays(1));
        conn.set(c);
        try (c) {
            while (done.getCount() > 0) {
                if (!commands.tryAcquire(100, TimeUnit.MILLISECONDS)) {
                    continue;
                }
                String cmd = rttCommand.getAndSet(null);
                if (cmd == null || !cmd.startsWith("rtt ")) {
                    continue;
                }
                String[] parts = cmd.split(" ");
                int count = Integer.parseInt(parts[1]);
                long gapNs = TimeUnit.MICROSECONDS.toNanos(Long.parseLong(parts[2]));
                Histogram h = new Histogram(TimeUnit.SECONDS.toNanos(10), 3);
                long pages = layout.region(0).pageCount();
                for (int i = 0; i < count && done.getCount() > 0; i++) {
                    long page = (i * 104729L) % pages;
                    long t0 = System.nanoTime();
                    c.urgent().sendPageRequest(0, page, 1);
                    if (!answered.tryAcquire(10, TimeUnit.SECONDS)) {
                        throw new IllegalStateException("page request " + i + " not answered within 10 s");
                    }
                    h.recordValue(Math.min(System.nanoTime() - t0, h.getHighestTrackableValue()));
                    LockSupport.parkNanos(gapNs); // pacing between requests, not waiting for a condition
                }
                ByteBuffer buf = ByteBuffer.allocate(h.getNeededByteBufferCapacity());
                h.encodeIntoCompressedByteBuffer(buf);
                buf.flip();
                byte[] out = new byte[buf.remaining()];
                buf.get(out);
                c.urgent().sendControl(MemorySegment.ofArray(out));
            }
            done.await();
        }
    }
}
