package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.RdmaFabric;
import io.pagewire.transport.rdma.verbs.RdmaServer;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Accepts sources. An acceptor thread takes connection requests; a short-lived thread per request
 * creates the queue pair with its receive buffers, accepts, and reads the first message within
 * the connect timeout: a HELLO starts a pending session, a JOIN completes one. Sessions with both
 * queue pairs are ready for {@link #accept}, which registers the destination RAM (all of it with
 * pin-all), answers HELLO_ACK with the registrations and starts the connection. Everything a
 * source can make us hold is bounded: handshake threads, pending and ready sessions.
 *
 * <p>All queue pairs of the listener share one protection domain per device (a queue pair needs
 * one before its first message says which session it belongs to).
 */
final class RdmaListener implements Listener {
    private static final int MAX_HANDSHAKES = 16;
    private static final int MAX_PENDING_SESSIONS = 8;
    private static final int MAX_READY_SESSIONS = 4;
    private static final System.Logger LOG = System.getLogger(RdmaListener.class.getName());

    private final RdmaOptions options;
    private final TransportContext context;
    private final RamLayout layout;
    private final RdmaServer server;
    private final String uri;
    private final long timeoutNs;
    private final Thread acceptor;
    private final Semaphore handshakeSlots = new Semaphore(MAX_HANDSHAKES);
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final Map<Long, Pending> pending = new HashMap<>();        // guarded by lock
    private final Map<String, SharedDomain> domains = new HashMap<>(); // guarded by lock
    private final BlockingQueue<Pending> ready = new ArrayBlockingQueue<>(MAX_READY_SESSIONS);
    private volatile boolean closed;
    private volatile TransportException failure;

    /** A session between HELLO and JOIN. */
    private static final class Pending {
        final Hello hello;
        final Protocol.Setup setup;
        final Channel urgent;
        final String peer;
        final SharedDomain domain;
        Channel background; // guarded by the listener lock
        boolean abandoned;  // guarded by the listener lock

        Pending(Hello hello, Protocol.Setup setup, Channel urgent, String peer, SharedDomain domain) {
            this.hello = hello;
            this.setup = setup;
            this.urgent = urgent;
            this.peer = peer;
            this.domain = domain;
        }

        void closeAll() {
            urgent.close();
            if (background != null) {
                background.close();
            }
        }
    }

    RdmaListener(RdmaFabric fabric, TransportUri uri, RdmaOptions options, TransportContext context) {
        this.options = options;
        this.context = context;
        this.layout = context.layout();
        this.timeoutNs = context.connectTimeoutNs();
        try {
            this.server = fabric.listen(uri.requireHost(), uri.requirePort());
        } catch (VerbsException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "rdma: cannot listen on " + uri.text() + ": " + e.getMessage(), e);
        }
        this.uri = uri.withPort(server.port()).text();
        this.acceptor = Thread.ofPlatform().daemon().name("pagewire-rdma-accept-" + server.port()).start(this::acceptLoop);
    }

    @Override
    public String uri() {
        return uri;
    }

    private void acceptLoop() {
        try {
            while (!closed) {
                RdmaEndpoint ep = server.awaitRequest(TimeUnit.MILLISECONDS.toNanos(200));
                if (ep == null) {
                    continue;
                }
                if (!handshakeSlots.tryAcquire()) {
                    LOG.log(System.Logger.Level.DEBUG, "rejecting " + ep.peerAddress() + ": " + MAX_HANDSHAKES + " handshakes in progress");
                    ep.reject();
                    ep.close();
                    continue;
                }
                try {
                    Thread.ofPlatform().daemon().name("pagewire-rdma-handshake").start(() -> {
                        try {
                            handshake(ep);
                        } finally {
                            handshakeSlots.release();
                        }
                    });
                } catch (RuntimeException | OutOfMemoryError e) {
                    handshakeSlots.release();
                    ep.close();
                    throw e;
                }
            }
        } catch (VerbsException e) {
            if (!closed) {
                failure = new TransportException(Kind.CONNECT_FAILED, "rdma: listener " + uri + " stopped accepting: " + e.getMessage(), e);
            }
        } finally {
            lock.lock();
            try {
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }
    }

    /** @return the device's shared domain, retained once for the caller */
    private SharedDomain domain(RdmaEndpoint ep) throws VerbsException {
        lock.lock();
        try {
            if (closed) {
                throw new VerbsException("the listener is closed");
            }
            SharedDomain d = domains.get(ep.device().name());
            if (d == null) {
                d = new SharedDomain(ep.device().allocPd());
                domains.put(ep.device().name(), d);
            }
            d.retain();
            return d;
        } finally {
            lock.unlock();
        }
    }

    /** Tells a source why it is turned away (best effort), then closes its queue pair. */
    private void refuse(Channel ch, String why) {
        try {
            Message m = ch.begin();
            Handshake.refuse(m, why);
            ch.post(m);
            ch.awaitAllSent(System.nanoTime() + TimeUnit.SECONDS.toNanos(1));
        } catch (VerbsException | TransportException e) {
            LOG.log(System.Logger.Level.DEBUG, "could not send the refusal \"" + why + "\" to " + ch.endpoint.peerAddress() + ": " + e.getMessage());
        } finally {
            ch.close();
        }
    }

    private void handshake(RdmaEndpoint ep) {
        Channel ch;
        SharedDomain domain;
        try {
            domain = domain(ep);
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "no protection domain for " + ep.peerAddress() + ": " + e.getMessage());
            ep.reject();
            ep.close();
            return;
        }
        try {
            ch = new Channel("accepted", ep, domain.pd, options.queueDepth(), options.queueDepth() + 8, true, 0, domain::release);
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "setting up a queue pair for " + ep.peerAddress() + " failed: " + e.getMessage());
            return; // the channel closed the endpoint and released the domain
        }
        try {
            ep.accept();
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "accepting " + ep.peerAddress() + " failed: " + e.getMessage());
            ch.close();
            return;
        }
        String peer = ep.peerAddress();
        MemorySegment msg;
        try {
            msg = ch.awaitHandshake(System.nanoTime() + timeoutNs);
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "handshake with " + peer + " broke off: " + e.getMessage());
            ch.close();
            return;
        }
        if (msg == null) {
            refuse(ch, "no HELLO or JOIN within " + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms");
            return;
        }
        try {
            Handshake.First first = Handshake.read(msg, Wire.MAX_HELLO_BYTES);
            switch (first.type()) {
                case FrameType.HELLO -> hello(ch, peer, domain, first);
                case FrameType.JOIN -> join(ch, first.header().first(), first.header().count(), Integer.toUnsignedLong(first.header().region()));
                default -> throw new WireException("expected HELLO or JOIN as the first frame, got " + Protocol.name(first.type()));
            }
        } catch (Handshake.VersionMismatch e) {
            refuse(ch, "this destination speaks pagewire wire version " + Wire.VERSION + "; the source speaks version " + e.version);
        } catch (TransportException e) {
            refuse(ch, e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            ch.close();
        }
    }

    private void hello(Channel ch, String peer, SharedDomain domain, Handshake.First first) {
        Hello hello = Hello.decode(first.payload(), (int) first.payload().byteSize());
        Protocol.Setup setup = Protocol.Setup.decode(Handshake.follow(first.after(), Protocol.RDMA_SETUP, Protocol.Setup.LENGTH), 0,
                Protocol.Setup.LENGTH);
        ch.releaseHandshake();
        String mismatch = RamLayout.mismatch(layout.descriptors(), hello.regions());
        if (mismatch != null) {
            refuse(ch, "RAM layout mismatch: " + mismatch);
            return;
        }
        if (hello.channels() != 1) {
            refuse(ch, "the source asks for " + hello.channels() + " background channels; rdma:// uses one background queue pair");
            return;
        }
        for (RegionDescriptor d : hello.regions()) {
            if (d.pageSize() > hello.maxPagePayload()) {
                refuse(ch, "max payload " + hello.maxPagePayload() + " is smaller than region '" + d.name() + "''s page size " + d.pageSize());
                return;
            }
        }
        if (Integer.bitCount(hello.maxPagePayload()) != 1) {
            refuse(ch, "max payload " + hello.maxPagePayload() + " is not a power of two");
            return;
        }
        long ownTimeoutMs = TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        if (2L * hello.heartbeatMs() > ownTimeoutMs) {
            refuse(ch, "the source's heartbeat interval " + hello.heartbeatMs() + " ms is too long for this destination's peer timeout "
                    + ownTimeoutMs + " ms");
            return;
        }
        Pending p = new Pending(hello, setup, ch, peer, domain);
        lock.lock();
        try {
            if (closed) {
                refuse(ch, "the destination is shutting down");
                return;
            }
            if (pending.size() >= MAX_PENDING_SESSIONS || pending.containsKey(hello.sessionId())) {
                refuse(ch, pending.containsKey(hello.sessionId()) ? "session id already in use"
                        : "the destination has " + MAX_PENDING_SESSIONS + " handshakes pending; try again");
                return;
            }
            pending.put(hello.sessionId(), p);
            changed.signalAll();
            long deadline = System.nanoTime() + timeoutNs;
            while (p.background == null && !closed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            pending.remove(hello.sessionId());
            if (p.background == null || closed) {
                p.abandoned = true;
                if (p.background != null) {
                    p.background.close();
                }
                refuse(ch, closed ? "the destination is shutting down" : "the background queue pair did not join within "
                        + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms");
                return;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            pending.remove(hello.sessionId());
            p.closeAll();
            return;
        } finally {
            lock.unlock();
        }
        if (!ready.offer(p)) {
            p.background.close();
            refuse(ch, "the destination has " + MAX_READY_SESSIONS + " migrations waiting to be accepted; try again");
        }
    }

    private void join(Channel ch, long sessionId, long channel, long channels) throws InterruptedException {
        ch.releaseHandshake();
        lock.lock();
        try {
            long deadline = System.nanoTime() + timeoutNs;
            Pending p;
            while ((p = pending.get(sessionId)) == null && !closed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            if (p == null || p.abandoned) {
                refuse(ch, "JOIN for unknown session " + Long.toHexString(sessionId));
                return;
            }
            if (channels != 1 || channel != 0 || p.background != null) {
                refuse(ch, "JOIN for channel " + channel + " of " + channels + " does not fit session " + Long.toHexString(sessionId)
                        + " (rdma:// uses one background queue pair)");
                return;
            }
            if (p.domain != domains.get(ch.endpoint.device().name())) {
                refuse(ch, "the background queue pair arrived on another RDMA device than the urgent one");
                return;
            }
            p.background = ch;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public Connection accept(MessageHandler handler, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            if (closed) {
                throw new TransportException(Kind.CLOSED, "listener " + uri + " is closed");
            }
            if (failure != null) {
                throw Channel.copy(failure);
            }
            long left = deadline - System.nanoTime();
            Pending p;
            try {
                p = ready.poll(Math.max(0, Math.min(left, TimeUnit.MILLISECONDS.toNanos(200))), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new TransportException(Kind.CLOSED, "interrupted while accepting on " + uri, e);
            }
            if (p == null) {
                if (System.nanoTime() - deadline >= 0) {
                    throw new TransportException(Kind.TIMEOUT, "no source connected to " + uri + " within " + timeout.toMillis() + " ms");
                }
                continue;
            }
            RdmaConnection c = start(p, handler);
            if (c != null) {
                return c;
            }
        }
    }

    /** Registers, answers HELLO_ACK and starts the connection; null when the source went away meanwhile. */
    private RdmaConnection start(Pending p, MessageHandler handler) {
        Hello h = p.hello;
        DestinationRam ram;
        if (!p.domain.retain()) {
            p.closeAll();
            throw new TransportException(Kind.CLOSED, "listener " + uri + " is closed");
        }
        try {
            ram = new DestinationRam(layout, p.domain.pd, options, h.maxPagePayload());
        } catch (TransportException e) {
            p.domain.release();
            p.background.close();
            refuse(p.urgent, "the destination cannot register its RAM: " + e.getMessage());
            throw e;
        }
        Protocol.Regions regions = ram.describe(options.queueDepth(), options.cacheChunks());
        if (regions.encodedLength() > Protocol.MAX_HANDSHAKE_PAYLOAD) {
            ram.close();
            p.domain.release();
            p.background.close();
            String why = "the destination's registration table needs " + regions.encodedLength() + " bytes, over rdma://'s "
                    + Protocol.MAX_HANDSHAKE_PAYLOAD + "-byte first message; use fewer regions";
            refuse(p.urgent, why);
            throw new TransportException(Kind.INVALID_CONFIG, why);
        }
        long heartbeatMs = Math.max(1, TimeUnit.NANOSECONDS.toMillis(context.heartbeatIntervalNs()));
        p.urgent.setPeer(p.setup.rxDepth(), 0);
        p.background.setPeer(p.setup.rxDepth(), 0);
        RdmaConnection c = new RdmaConnection(Role.DESTINATION, p.peer, layout, options, h.maxPagePayload(), h.dataDigest(), handler,
                context.heartbeatIntervalNs(), context.peerTimeoutNs(), p.urgent, p.background, p.domain::release, null, null, ram);
        try {
            Message m = p.urgent.begin();
            Handshake.accept(m, h.sessionId(), heartbeatMs, regions);
            p.urgent.post(m);
        } catch (TransportException e) {
            LOG.log(System.Logger.Level.DEBUG, "source " + p.peer + " went away before HELLO_ACK: " + e.getMessage());
            c.close();
            return null;
        }
        c.start();
        return c;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        server.close();
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        try {
            acceptor.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Pending p;
        while ((p = ready.poll()) != null) {
            p.background.close();
            refuse(p.urgent, "the destination stopped listening before accepting this migration");
        }
        lock.lock();
        try {
            for (SharedDomain d : domains.values()) {
                d.release(); // the listener's own reference; accepted connections keep theirs
            }
            domains.clear();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public String toString() {
        return "RdmaListener[" + uri + "]";
    }
}
