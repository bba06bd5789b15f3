package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** Opens listener/source/destination triples for this module's tests and closes everything it opened. */
final class Pairs implements AutoCloseable {
    private final Deque<AutoCloseable> opened = new ArrayDeque<>();

    record Pair(Listener listener, Connection source, Connection destination) {
    }

    <T extends AutoCloseable> T later(T c) {
        opened.push(c);
        return c;
    }

    Pair open(String listenUri, RamLayout src, RamLayout dst, MessageHandler srcHandler, MessageHandler dstHandler) throws Exception {
        return open(listenUri, null, src, dst, srcHandler, dstHandler);
    }

    /** @param connectSuffix appended to the listener's URI for the source (e.g. "|aeron.dir=..."), or null */
    Pair open(String listenUri, String connectSuffix, RamLayout src, RamLayout dst, MessageHandler srcHandler, MessageHandler dstHandler)
            throws Exception {
        Listener l = later(Transports.listen(listenUri, new TransportContext().layout(dst)));
        String target = l.uri() + (connectSuffix == null ? "" : connectSuffix);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(
                () -> Transports.connect(target, new TransportContext().layout(src).handler(srcHandler)));
        Connection d = later(l.accept(dstHandler, Duration.ofSeconds(30)));
        Connection s = later(source.get(30, TimeUnit.SECONDS));
        return new Pair(l, s, d);
    }

    /** Records errors and completion. */
    static class Recorder implements MessageHandler {
        final AtomicReference<TransportException> error = new AtomicReference<>();
        final CountDownLatch errored = new CountDownLatch(1);
        final CountDownLatch completed = new CountDownLatch(1);

        @Override
        public void onError(TransportException e) {
            error.compareAndSet(null, e);
            errored.countDown();
        }

        @Override
        public void onComplete() {
            completed.countDown();
        }

        TransportException awaitError(Duration d) throws InterruptedException {
            assertTrue(errored.await(d.toMillis(), TimeUnit.MILLISECONDS), "no error reported within " + d);
            return error.get();
        }

        void assertNoError() {
            if (error.get() != null) {
                throw new AssertionError("unexpected transport error: " + error.get(), error.get());
            }
        }
    }

    /** A destination recorder that acknowledges completion and counts placed pages. */
    static class Acking extends Recorder {
        volatile Connection connection;
        final java.util.concurrent.atomic.AtomicLong pages = new java.util.concurrent.atomic.AtomicLong();

        @Override
        public void onPages(LaneKind lane, int regionId, long firstPage, int pageCount) {
            pages.addAndGet(pageCount);
        }

        @Override
        public void onComplete() {
            connection.urgent().sendComplete();
            super.onComplete();
        }
    }

    /** Completes a pair: COMPLETE from the source, acknowledged by the destination. */
    static void complete(Pair p, Acking dst, Recorder src) throws InterruptedException {
        dst.connection = p.destination();
        p.source().background().sendComplete();
        assertTrue(dst.completed.await(60, TimeUnit.SECONDS), "destination onComplete");
        assertTrue(src.completed.await(30, TimeUnit.SECONDS), "source onComplete");
        dst.assertNoError();
        src.assertNoError();
    }

    @Override
    public void close() throws Exception {
        Exception first = null;
        while (!opened.isEmpty()) {
            try {
                opened.pop().close();
            } catch (Exception e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
