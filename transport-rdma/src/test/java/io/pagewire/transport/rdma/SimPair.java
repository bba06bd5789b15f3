package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.sim.SimQueuePair;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** A source and destination connected over the simulated fabric, with access to their queue pairs. */
record SimPair(Listener listener, Connection source, Connection destination, int port) implements AutoCloseable {

    static SimPair open(String uri, RamLayout src, RamLayout dst, MessageHandler srcHandler, MessageHandler dstHandler) throws Exception {
        return open(uri, new TransportContext().layout(src).handler(srcHandler), new TransportContext().layout(dst), dstHandler);
    }

    static SimPair open(String uri, TransportContext srcCtx, TransportContext dstCtx, MessageHandler dstHandler) throws Exception {
        Listener l = Transports.listen(uri, dstCtx);
        CompletableFuture<Connection> s = CompletableFuture.supplyAsync(() -> Transports.connect(l.uri(), srcCtx));
        Connection d = l.accept(dstHandler, Duration.ofSeconds(30));
        return new SimPair(l, s.get(30, TimeUnit.SECONDS), d, TransportUri.parse(l.uri()).port());
    }

    /** @return the source's ({@code passive=false}) or destination's queue pair of a lane */
    SimQueuePair queuePair(boolean passive, LaneKind lane) {
        String name = lane == LaneKind.URGENT ? "urgent" : "background";
        for (SimQueuePair qp : SimFabric.instance().queuePairs(port)) {
            SimQueuePair active = passive ? qp.peer() : qp;
            if (qp.isPassive() == passive && active != null && active.name().equals(name)) {
                return qp;
            }
        }
        throw new AssertionError("no " + (passive ? "destination" : "source") + " " + name + " queue pair on port " + port);
    }

    @Override
    public void close() {
        source.close();
        destination.close();
        listener.close();
    }

    /** Records errors and completion. */
    static class Recorder implements MessageHandler {
        final AtomicReference<TransportException> error = new AtomicReference<>();
        final CountDownLatch errored = new CountDownLatch(1);
        final CountDownLatch completed = new CountDownLatch(1);
        final AtomicLong errors = new AtomicLong();
        volatile Connection connection;

        @Override
        public void onError(TransportException e) {
            errors.incrementAndGet();
            error.compareAndSet(null, e);
            errored.countDown();
        }

        @Override
        public void onComplete() {
            Connection c = connection;
            if (c != null && c.role() == io.pagewire.transport.spi.Role.DESTINATION) {
                c.urgent().sendComplete();
            }
            completed.countDown();
        }

        TransportException awaitError(Duration d) throws InterruptedException {
            assertTrue(errored.await(d.toMillis(), TimeUnit.MILLISECONDS), "no error reported within " + d);
            return error.get();
        }

        void awaitComplete(Duration d) throws InterruptedException {
            assertTrue(completed.await(d.toMillis(), TimeUnit.MILLISECONDS), "no completion within " + d + (error.get() == null ? "" : ": " + error.get()));
        }
    }
}
