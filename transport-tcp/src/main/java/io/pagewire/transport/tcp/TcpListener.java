package io.pagewire.transport.tcp;

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
import io.pagewire.transport.tcp.net.NativeSocket;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
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
 * Accepts sources. An acceptor thread takes sockets; a short-lived thread per socket reads its
 * preamble and first frame within the connect timeout (so a silent or slow peer holds nothing
 * but its own thread) and either starts a pending session (HELLO) or joins one (JOIN). A session
 * whose background channels have all joined is ready for {@link #accept}. Everything a source
 * can make us hold is bounded: handshake threads, pending sessions, ready sessions.
 */
final class TcpListener implements Listener {
    private static final int MAX_HANDSHAKES = 2 * Wire.MAX_CHANNELS + 8;
    private static final int MAX_PENDING_SESSIONS = 16;
    private static final int MAX_READY_SESSIONS = 8;

    private final TcpOptions options;
    private final TransportContext context;
    private final RamLayout layout;
    private final NativeSocket server;
    private final String uri;
    private final long timeoutMs;
    private final Thread acceptor;
    private final Semaphore handshakeSlots = new Semaphore(MAX_HANDSHAKES);
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final Map<Long, Pending> pending = new HashMap<>(); // guarded by lock
    private final BlockingQueue<Pending> ready = new ArrayBlockingQueue<>(MAX_READY_SESSIONS);
    private volatile boolean closed;
    private volatile TransportException failure;
    private static final System.Logger LOG = System.getLogger(TcpListener.class.getName());

    /** A session between HELLO and the last JOIN. */
    private static final class Pending {
        final Hello hello;
        final NativeSocket urgent;
        final NativeSocket[] background;
        final String peer;
        int joined; // guarded by the listener lock
        boolean abandoned; // guarded by the listener lock

        Pending(Hello hello, NativeSocket urgent, String peer) {
            this.hello = hello;
            this.urgent = urgent;
            this.background = new NativeSocket[hello.channels()];
            this.peer = peer;
            if (hello.sharedChannel()) {
                background[0] = urgent; // the HELLO's connection is channel 0; channels 1..n-1 JOIN
                joined = 1;
            }
        }

        void closeAll() {
            TcpTransportProvider.closeAll(urgent, background);
        }

        /** Closes the background sockets that are not also the urgent one (which the caller refuses and closes). */
        void closeBackgroundOnly() {
            for (NativeSocket b : background) {
                if (b != null && b != urgent) {
                    b.close();
                }
            }
        }
    }

    TcpListener(TransportUri uri, TcpOptions options, TransportContext context) {
        this.options = options;
        this.context = context;
        this.layout = context.layout();
        this.timeoutMs = TimeUnit.NANOSECONDS.toMillis(context.connectTimeoutNs());
        InetSocketAddress bind = new InetSocketAddress(uri.requireHost(), uri.requirePort());
        if (bind.isUnresolved()) {
            throw new TransportException(Kind.CONNECT_FAILED, "cannot resolve host '" + uri.host() + "' in '" + uri.text() + "'");
        }
        try {
            this.server = NativeSocket.listen(bind, 128);
            int port = server.localAddress().getPort();
            this.uri = uri.withPort(port).text();
        } catch (IOException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "tcp: cannot listen on " + uri.text() + ": " + e.getMessage(), e);
        }
        this.acceptor = Thread.ofPlatform().daemon().name("pagewire-tcp-accept-" + this.uri).start(this::acceptLoop);
    }

    @Override
    public String uri() {
        return uri;
    }

    private void acceptLoop() {
        try {
            while (!closed) {
                NativeSocket s = server.accept(-1);
                if (s == null) {
                    continue;
                }
                if (!handshakeSlots.tryAcquire()) {
                    rejectQuietly(s, "the destination has " + MAX_HANDSHAKES + " handshakes in progress; try again");
                    continue;
                }
                try {
                    Thread.ofPlatform().daemon().name("pagewire-tcp-handshake").start(() -> {
                        try {
                            handshake(s);
                        } finally {
                            handshakeSlots.release();
                        }
                    });
                } catch (RuntimeException | OutOfMemoryError e) {
                    handshakeSlots.release();
                    s.close();
                    throw e;
                }
            }
        } catch (IOException e) {
            if (!closed) {
                // The listening socket failed on its own (not through close()): nothing more will be accepted.
                failure = new TransportException(Kind.CONNECT_FAILED, "tcp: listener " + uri + " stopped accepting: " + e.getMessage(), e);
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

    /** Tells a source why it is turned away (best effort: it may be gone already) and closes its socket. */
    private static void rejectQuietly(NativeSocket s, String why) {
        try {
            s.sendTimeoutMs(1000);
            Handshake.writeError(s, why);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "could not send the rejection \"" + why + "\" to a source: " + e.getMessage());
        } finally {
            s.close();
        }
    }

    private void handshake(NativeSocket s) {
        String peer = "unknown peer";
        try {
            peer = s.remoteAddress().toString();
            s.receiveTimeoutMs(timeoutMs);
            s.sendTimeoutMs(timeoutMs);
            int version = Handshake.readPreamble(s);
            if (version < 0) {
                s.close(); // connected and left without a word (a port probe)
                return;
            }
            if (version != Wire.VERSION) {
                rejectQuietly(s, "this destination speaks pagewire wire version " + Wire.VERSION + "; the source speaks version " + version);
                return;
            }
            Handshake.Frame first = Handshake.readFrame(s, Wire.MAX_HELLO_BYTES);
            switch (first.type()) {
                case FrameType.HELLO -> hello(s, peer, Hello.decode(MemorySegment.ofArray(first.payload()), first.payload().length, true));
                case FrameType.JOIN -> join(s, first.first(), first.count(), Integer.toUnsignedLong(first.region()));
                default -> throw new WireException("expected HELLO or JOIN as the first frame, got " + FrameType.name(first.type()));
            }
        } catch (TransportException e) {
            rejectQuietly(s, e.getMessage());
        } catch (IOException e) {
            // A source that breaks off its own handshake: its connect() reports the cause; we only close.
            LOG.log(System.Logger.Level.DEBUG, "handshake with " + peer + " broke off: " + e.getMessage());
            s.close();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            s.close();
        }
    }

    private void hello(NativeSocket s, String peer, Hello hello) {
        String mismatch = RamLayout.mismatch(layout.descriptors(), hello.regions());
        if (mismatch != null) {
            rejectQuietly(s, "RAM layout mismatch: " + mismatch);
            return;
        }
        for (RegionDescriptor d : hello.regions()) {
            if (d.pageSize() > hello.maxPagePayload()) {
                rejectQuietly(s, "max payload " + hello.maxPagePayload() + " is smaller than region '" + d.name() + "''s page size " + d.pageSize());
                return;
            }
        }
        long ownTimeoutMs = TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        if (2L * hello.heartbeatMs() > ownTimeoutMs) {
            rejectQuietly(s, "the source's heartbeat interval " + hello.heartbeatMs() + " ms is too long for this destination's peer timeout "
                    + ownTimeoutMs + " ms");
            return;
        }
        Pending p = new Pending(hello, s, peer);
        lock.lock();
        try {
            if (closed) {
                rejectQuietly(s, "the destination is shutting down");
                return;
            }
            if (pending.size() >= MAX_PENDING_SESSIONS || pending.containsKey(hello.sessionId())) {
                rejectQuietly(s, pending.containsKey(hello.sessionId()) ? "session id already in use"
                        : "the destination has " + MAX_PENDING_SESSIONS + " handshakes pending; try again");
                return;
            }
            pending.put(hello.sessionId(), p);
            changed.signalAll();
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (p.joined < hello.channels() && !closed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            pending.remove(hello.sessionId());
            if (p.joined < hello.channels() || closed) {
                p.abandoned = true;
                String why = closed ? "the destination is shutting down"
                        : "only " + p.joined + " of " + hello.channels() + " background connections joined within " + timeoutMs + " ms";
                p.closeBackgroundOnly();
                rejectQuietly(s, why);
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
            p.closeBackgroundOnly();
            rejectQuietly(s, "the destination has " + MAX_READY_SESSIONS + " migrations waiting to be accepted; try again");
        }
    }

    private void join(NativeSocket s, long sessionId, long channel, long channels) throws InterruptedException {
        lock.lock();
        try {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            Pending p;
            // The HELLO may still be in another handshake thread: wait for it.
            while ((p = pending.get(sessionId)) == null && !closed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            if (p == null || p.abandoned) {
                rejectQuietly(s, "JOIN for unknown session " + Long.toHexString(sessionId));
                return;
            }
            if (channels != p.hello.channels() || channel < 0 || channel >= channels || p.background[(int) channel] != null) {
                rejectQuietly(s, "JOIN for channel " + channel + " of " + channels + " does not fit session " + Long.toHexString(sessionId)
                        + " with " + p.hello.channels() + " channels");
                return;
            }
            p.background[(int) channel] = s;
            p.joined++;
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
                throw new TransportException(failure.kind(), failure.getMessage(), failure);
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
            TcpConnection c = start(p, handler);
            if (c != null) {
                return c;
            }
        }
    }

    /** Answers HELLO_ACK and starts the connection; null when the source went away meanwhile. */
    private TcpConnection start(Pending p, MessageHandler handler) {
        Hello h = p.hello;
        int peerTimeoutMs = (int) TimeUnit.NANOSECONDS.toMillis(context.peerTimeoutNs());
        long heartbeatMs = Math.max(1, TimeUnit.NANOSECONDS.toMillis(context.heartbeatIntervalNs()));
        try {
            if (h.sharedChannel()) {
                TcpTransportProvider.configureShared(p.urgent, options, peerTimeoutMs);
            } else {
                TcpTransportProvider.configureUrgent(p.urgent, options, peerTimeoutMs);
            }
            for (NativeSocket b : p.background) {
                if (b != p.urgent) {
                    TcpTransportProvider.configureBackground(b, options, peerTimeoutMs);
                }
                b.receiveTimeoutMs(0);
                b.sendTimeoutMs(0);
            }
            p.urgent.sendTimeoutMs(0);
            TcpConnection c = new TcpConnection(Role.DESTINATION, p.peer, layout, h.channels(), h.dataDigest(), h.maxPagePayload(),
                    1, p.urgent, p.background, handler, context.heartbeatIntervalNs(), context.peerTimeoutNs(),
                    TcpTransportProvider.capabilities(h.channels(), h.dataDigest(), options.urgentDscp() >= 0, h.sharedChannel()),
                    options.backgroundNice(), h.sharedChannel());
            Handshake.write(p.urgent, FrameType.HELLO_ACK, 0, h.sessionId(), heartbeatMs, null);
            c.start();
            return c;
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "source " + p.peer + " went away before HELLO_ACK: " + e.getMessage());
            p.closeAll();
            return null;
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        server.shutdown();
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
        server.close();
        Pending p;
        while ((p = ready.poll()) != null) {
            p.closeBackgroundOnly();
            rejectQuietly(p.urgent, "the destination stopped listening before accepting this migration");
        }
    }

    @Override
    public String toString() {
        return "TcpListener[" + uri + "]";
    }
}
