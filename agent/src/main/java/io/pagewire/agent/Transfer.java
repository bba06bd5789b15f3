package io.pagewire.agent;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32C;

/**
 * A one-round RAM transfer with end-to-end verification: the source sends every page (zero
 * pages as zero runs) and then the CRC32C of its RAM; the destination acknowledges completion
 * only when its RAM has the same CRC32C. This is the foundation's demo; the migration engine
 * (precopy rounds over a running guest) builds on the same connection calls.
 */
public final class Transfer {
    private Transfer() {
    }

    /** What a transfer did, named as QEMU's {@code query-migrate} names it. */
    public record Stats(String status, long totalTimeMs, long setupTimeMs, long totalBytes, long transferredBytes, long normalPages,
                        long duplicatePages, long pageSize, double mbps, boolean verified) {

        /** @return the statistics in the style of QEMU's {@code info migrate} */
        public String infoMigrate() {
            return String.join(System.lineSeparator(),
                    "Migration status: " + status,
                    "total time: " + totalTimeMs + " ms",
                    "setup: " + setupTimeMs + " ms",
                    "transferred ram: " + transferredBytes / 1024 + " kbytes",
                    String.format(java.util.Locale.ROOT, "throughput: %.2f mbps", mbps),
                    "remaining ram: 0 kbytes",
                    "total ram: " + totalBytes / 1024 + " kbytes",
                    "duplicate: " + duplicatePages + " pages",
                    "normal: " + normalPages + " pages",
                    "normal bytes: " + normalPages * pageSize / 1024 + " kbytes",
                    "verified: " + verified);
        }

        /** @return the statistics as JSON, with QEMU's field names */
        public String json() {
            return String.format(java.util.Locale.ROOT,
                    "{\"status\":\"%s\",\"total-time\":%d,\"setup-time\":%d,\"ram\":{\"transferred\":%d,\"remaining\":0,\"total\":%d,"
                            + "\"duplicate\":%d,\"normal\":%d,\"normal-bytes\":%d,\"mbps\":%.2f,\"page-size\":%d},\"verified\":%s}",
                    status, totalTimeMs, setupTimeMs, transferredBytes, totalBytes, duplicatePages, normalPages, normalPages * pageSize,
                    mbps, pageSize, verified);
        }
    }

    /**
     * Sends {@code ram} to the destination at {@code uri} and waits for its verdict.
     *
     * @return statistics; {@code verified} is true only when the destination confirmed its copy
     */
    public static Stats send(String uri, MemorySegment ram, long pageSize) throws InterruptedException {
        long t0 = System.nanoTime();
        RamLayout layout = RamLayout.of(RamRegion.of("pc.ram", ram, pageSize));
        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<TransportException> error = new AtomicReference<>();
        MessageHandler handler = new MessageHandler() {
            @Override
            public void onComplete() {
                done.countDown();
            }

            @Override
            public void onError(TransportException e) {
                error.set(e);
                done.countDown();
            }
        };
        try (Connection c = Transports.connect(uri, new TransportContext().layout(layout).handler(handler))) {
            long setupMs = (System.nanoTime() - t0) / 1_000_000;
            long pages = ram.byteSize() / pageSize;
            MemorySegment zero = Arena.ofAuto().allocate(pageSize);
            long normal = 0;
            long duplicate = 0;
            long i = 0;
            while (i < pages) {
                boolean isZero = isZero(ram, i, pageSize, zero);
                long j = i + 1;
                while (j < pages && isZero(ram, j, pageSize, zero) == isZero) {
                    j++;
                }
                if (isZero) {
                    c.background().sendZeroRun(0, i, j - i);
                    duplicate += j - i;
                } else {
                    c.background().sendPages(0, i, j - i);
                    normal += j - i;
                }
                i = j;
            }
            c.background().sendRoundEnd(1);
            byte[] check = ("crc32c " + Long.toHexString(crc32c(ram))).getBytes(StandardCharsets.UTF_8);
            c.background().sendControl(MemorySegment.ofArray(check));
            c.background().sendComplete();
            if (!done.await(10, TimeUnit.MINUTES)) {
                throw new TransportException(TransportException.Kind.TIMEOUT, "no answer from the destination within 10 minutes");
            }
            long totalMs = Math.max(1, (System.nanoTime() - t0) / 1_000_000);
            long transferred = c.stats().bytesSent();
            boolean verified = error.get() == null;
            if (error.get() != null) {
                throw error.get();
            }
            return new Stats("completed", totalMs, setupMs, ram.byteSize(), transferred, normal, duplicate, pageSize,
                    transferred * 8.0 / 1e6 / (totalMs / 1000.0), verified);
        }
    }

    private static boolean isZero(MemorySegment ram, long page, long pageSize, MemorySegment zero) {
        return ram.asSlice(page * pageSize, pageSize).mismatch(zero) == -1;
    }

    /** CRC32C of a whole segment. */
    public static long crc32c(MemorySegment m) {
        CRC32C crc = new CRC32C();
        for (long off = 0; off < m.byteSize(); off += 1L << 30) {
            crc.update(m.asSlice(off, Math.min(1L << 30, m.byteSize() - off)).asByteBuffer());
        }
        return crc.getValue();
    }

    /**
     * Receives one transfer into {@code ram} and verifies it.
     *
     * @return true when the RAM matched the source's checksum (and completion was acknowledged)
     */
    public static boolean receive(Listener listener, MemorySegment ram, long pageSize, Duration acceptTimeout) throws InterruptedException {
        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<String> expected = new AtomicReference<>();
        AtomicReference<Boolean> verdict = new AtomicReference<>(false);
        AtomicReference<Connection> self = new AtomicReference<>();
        MessageHandler handler = new MessageHandler() {
            @Override
            public void onZeroRun(LaneKind lane, int regionId, long firstPage, long pageCount) {
                ram.asSlice(firstPage * pageSize, pageCount * pageSize).fill((byte) 0);
            }

            @Override
            public void onControl(LaneKind lane, MemorySegment payload) {
                String text = new String(payload.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
                if (text.startsWith("crc32c ")) {
                    expected.set(text.substring(7));
                }
            }

            @Override
            public void onComplete() {
                String actual = Long.toHexString(crc32c(ram));
                if (actual.equals(expected.get())) {
                    verdict.set(true);
                    self.get().urgent().sendComplete();
                } else {
                    self.get().abort("destination RAM CRC32C " + actual + " differs from the source's " + expected.get());
                }
                done.countDown();
            }

            @Override
            public void onError(TransportException e) {
                System.err.println("pagewire receive: " + e.getMessage());
                done.countDown();
            }
        };
        Connection c = listener.accept(handler, acceptTimeout);
        self.set(c);
        try (c) {
            done.await();
            return verdict.get();
        }
    }

    /** Opens a listener for a RAM of {@code bytes}. */
    public static Listener listen(String uri, MemorySegment ram, long pageSize) {
        return Transports.listen(uri, new TransportContext().layout(RamLayout.of(RamRegion.of("pc.ram", ram, pageSize))));
    }
}
