package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.WireException;

import java.io.IOException;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Session admission for listeners whose sources open one endpoint per stream (a socket, a queue
 * pair): written once for every such transport. An acceptor thread takes endpoints; a short-lived
 * thread per endpoint reads its first message within the connect timeout (a silent or slow peer
 * holds nothing but its own thread) and either starts a pending session (HELLO) or joins one
 * (JOIN). A session whose background streams have all joined waits in a {@link ReadyQueue} for
 * {@link #accept}, which answers HELLO_ACK and starts the connection through {@link #start}.
 *
 * <p>Everything a source can make a listener hold is bounded: handshake threads, pending sessions,
 * ready sessions. HELLOs are checked by {@link Handshakes#refusal}, the transport's own
 * {@link #transportRefusal} and the {@link HandshakeGuard}; JOINs by the session they name and the
 * guard. A refused source is told why ({@link #refuse}) and closed; the listener goes on.
 *
 * @param <E> an endpoint: one accepted socket or queue pair
 * @param <A> what a transport keeps with a session besides its endpoints (null if nothing)
 */
public abstract class SessionListener<E, A> implements Listener {
    private static final System.Logger LOG = System.getLogger(SessionListener.class.getName());

    /**
     * The first message on an endpoint: a HELLO (with what the transport read besides, and the result
     * of its authentication when the listener demands it) or a JOIN (with its MAC, if any).
     */
    public record First<A>(int type, Hello hello, A attachment, long sessionId, long stream, long streams, AuthExchange.Result auth,
                           byte[] joinMac) {
        /** @return an unauthenticated HELLO */
        public static <A> First<A> hello(Hello hello, A attachment) {
            return hello(hello, attachment, null);
        }

        /** @return a HELLO and its authentication ({@link SessionListener#authenticate}) */
        public static <A> First<A> hello(Hello hello, A attachment, AuthExchange.Result auth) {
            return new First<>(FrameType.HELLO, hello, attachment, hello.sessionId(), -1, hello.channels(), auth, null);
        }

        /** @return a JOIN of background stream {@code stream} of {@code streams} without a MAC */
        public static <A> First<A> join(long sessionId, long stream, long streams) {
            return join(sessionId, stream, streams, null);
        }

        /** @return a JOIN of background stream {@code stream} of {@code streams} with its MAC (null: none) */
        public static <A> First<A> join(long sessionId, long stream, long streams, byte[] mac) {
            return new First<>(FrameType.JOIN, null, null, sessionId, stream, streams, null, mac);
        }
    }

    /** One source between its HELLO and its connection. */
    public static final class Session<E, A> {
        private final Hello hello;
        private final E urgent;
        private final Object[] background;
        private final String peer;
        private final A attachment;
        private final AuthExchange.Result auth;
        private int joined;        // guarded by the listener lock
        private boolean abandoned; // guarded by the listener lock

        Session(Hello hello, E urgent, String peer, A attachment, AuthExchange.Result auth) {
            this.hello = hello;
            this.auth = auth;
            this.urgent = urgent;
            this.background = new Object[hello.channels()];
            this.peer = peer;
            this.attachment = attachment;
            if (hello.sharedChannel()) {
                background[0] = urgent; // the HELLO's endpoint is stream 0; streams 1..n-1 JOIN
                joined = 1;
            }
        }

        /** @return the source's HELLO */
        public Hello hello() {
            return hello;
        }

        /** @return the HELLO's endpoint: the urgent one (or, shared, background stream 0 as well) */
        public E urgent() {
            return urgent;
        }

        /** @return background stream {@code i}'s endpoint */
        @SuppressWarnings("unchecked")
        public E background(int i) {
            return (E) background[i];
        }

        /** @return background streams */
        public int streams() {
            return background.length;
        }

        /** @return the source, for messages */
        public String peer() {
            return peer;
        }

        /** @return what the transport read with the HELLO */
        public A attachment() {
            return attachment;
        }

        /** @return the session's authentication (its key), or null when the listener demands none */
        public AuthExchange.Result auth() {
            return auth;
        }
    }

    protected final TransportContext context;
    protected final long timeoutNs;
    private final int maxPending;
    private final Semaphore handshakeSlots;
    private final int maxHandshakes;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final Map<Long, Session<E, A>> pending = new HashMap<>(); // guarded by lock
    private final ReadyQueue<Session<E, A>> ready;
    private final HandshakeGuard guard;
    private String uri;
    private Thread acceptor;
    private volatile boolean closed;
    private volatile TransportException failure;

    /**
     * @param maxHandshakes most endpoints reading their first message at once
     * @param maxPending most sessions waiting for their JOINs
     * @param maxReady most sessions waiting for {@link #accept}
     */
    protected SessionListener(TransportContext context, int maxHandshakes, int maxPending, int maxReady) {
        this.context = context;
        this.timeoutNs = context.connectTimeoutNs();
        this.maxHandshakes = maxHandshakes;
        this.handshakeSlots = new Semaphore(maxHandshakes);
        this.maxPending = maxPending;
        this.ready = new ReadyQueue<>(maxReady);
        this.guard = Handshakes.guard(context);
    }

    /** Starts accepting; call once the listening endpoint exists. */
    protected final void startAccepting(String listenUri, String threadName) {
        this.uri = listenUri;
        this.acceptor = Thread.ofPlatform().daemon().name(threadName).start(this::acceptLoop);
    }

    /**
     * Waits for the next endpoint (the acceptor thread's blocking call).
     *
     * @return the endpoint, or null to look at {@code closed} and call again
     * @throws IOException when the listening endpoint failed: nothing more will be accepted (also any
     *         {@link TransportException}, which is then what {@link #accept} throws)
     */
    protected abstract E awaitEndpoint() throws IOException;

    /**
     * Reads the endpoint's first message (preamble and HELLO or JOIN) within {@link #timeoutNs}.
     *
     * @return what arrived, or null when the peer left without a word (a port probe)
     * @throws TransportException what is wrong with it (the source is told)
     * @throws IOException when the source broke off (it is only closed)
     */
    protected abstract First<A> readFirst(E endpoint) throws IOException;

    /** Tells a source why it is turned away (best effort, briefly) and closes the endpoint. */
    protected abstract void refuse(E endpoint, String why);

    /** Closes an endpoint without a word. */
    protected abstract void closeEndpoint(E endpoint);

    /** @return the endpoint's peer, for messages */
    protected abstract String peerName(E endpoint);

    /**
     * Answers HELLO_ACK and starts the session's connection with {@code handler}.
     *
     * @return the connection, or null when the source went away meanwhile (its endpoints closed)
     */
    protected abstract Connection start(Session<E, A> session, MessageHandler handler);

    /** Wakes the acceptor out of {@link #awaitEndpoint()} for good (the listener is closing). */
    protected abstract void stopAccepting();

    /** Frees the listening endpoint, after the acceptor ended. */
    protected abstract void closeListening();

    /**
     * Authenticates a source: the transport calls this right after decoding its HELLO, before it
     * reads anything else the source sends with it and before the layout is looked at (a stranger
     * learns nothing of it), with a channel that carries AUTH messages on the HELLO's endpoint.
     *
     * @return the session's keys, or null when this listener demands no authentication
     * @throws TransportException when the source is refused: the destination logs the full reason, the
     *         source is told little
     */
    protected final AuthExchange.Result authenticate(Hello hello, AuthExchange.Channel channel, String peer) throws IOException {
        Authentication auth = context.authentication();
        if (auth == null) {
            if (hello.authenticated()) {
                throw new TransportException(Kind.HANDSHAKE, "this destination does not authenticate sources (no psk-file= or tls-creds="
                        + " in its URI); remove the credentials from the source's URI or add them to the destination's");
            }
            return null;
        }
        if (!hello.authenticated()) {
            throw refusal(new AuthExchange.Refusal("source " + peer + " offered no authentication; this destination requires "
                    + auth.mode(), AuthExchange.REFUSED + ": this destination accepts only authenticated sources (docs/security.md)"));
        }
        try {
            AuthExchange.Result r = AuthExchange.destination(auth, hello, channel, peer);
            LOG.log(System.Logger.Level.INFO, "source " + peer + " authenticated as " + r.peerIdentity());
            return r;
        } catch (AuthExchange.Refusal e) {
            throw refusal(e);
        }
    }

    private static AuthExchange.Refusal refusal(AuthExchange.Refusal e) {
        LOG.log(System.Logger.Level.WARNING, "refused: " + e.detail());
        return e;
    }

    /** @return why this transport refuses a HELLO that passed the common checks, or null */
    protected String transportRefusal(Hello hello) {
        return null;
    }

    /** @return why a JOIN does not fit its session beyond the stream numbers (e.g. another device), or null */
    protected String joinRefusal(Session<E, A> session, E endpoint) {
        return null;
    }

    /** Lets go of what a session's attachment holds (it was refused or abandoned). */
    protected void releaseAttachment(A attachment) {
    }

    @Override
    public String uri() {
        return uri;
    }

    private void acceptLoop() {
        try {
            while (!closed) {
                E e = awaitEndpoint();
                if (e == null) {
                    continue;
                }
                if (!handshakeSlots.tryAcquire()) {
                    refuse(e, "the destination has " + maxHandshakes + " handshakes in progress; try again");
                    continue;
                }
                try {
                    Thread.ofPlatform().daemon().name(acceptor.getName() + "-handshake").start(() -> {
                        try {
                            handshake(e);
                        } finally {
                            handshakeSlots.release();
                        }
                    });
                } catch (RuntimeException | OutOfMemoryError x) {
                    handshakeSlots.release();
                    closeEndpoint(e);
                    throw x;
                }
            }
        } catch (IOException | RuntimeException e) {
            if (!closed) {
                // The listening endpoint failed on its own (not through close()): nothing more will be accepted.
                failure = e instanceof TransportException t ? t
                        : new TransportException(Kind.CONNECT_FAILED, "listener " + uri + " stopped accepting: " + e.getMessage(), e);
            }
        } finally {
            signal();
        }
    }

    private void signal() {
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void handshake(E e) {
        String peer = "unknown peer";
        try {
            peer = peerName(e);
            First<A> first = readFirst(e);
            if (first == null) {
                closeEndpoint(e);
                return;
            }
            switch (first.type()) {
                case FrameType.HELLO -> {
                    if (context.authentication() != null && first.auth() == null) {
                        // a transport that forgot to call authenticate(): never let such a session in
                        throw new IllegalStateException(getClass().getName() + " read a HELLO without authenticating it");
                    }
                    hello(e, peer, first);
                }
                case FrameType.JOIN -> join(e, peer, first);
                default -> throw new WireException("expected HELLO or JOIN as the first frame, got " + FrameType.name(first.type()));
            }
        } catch (TransportException x) {
            refuse(e, x.getMessage());
        } catch (IOException x) {
            // A source that breaks off its own handshake: its connect() reports the cause; we only close.
            LOG.log(System.Logger.Level.DEBUG, "handshake with " + peer + " broke off: " + x.getMessage());
            closeEndpoint(e);
        } catch (InterruptedException x) {
            Thread.currentThread().interrupt();
            closeEndpoint(e);
        }
    }

    private void hello(E e, String peer, First<A> first) throws InterruptedException {
        Hello hello = first.hello();
        String why = Handshakes.refusal(context, hello);
        if (why == null) {
            why = transportRefusal(hello);
        }
        if (why == null) {
            why = guard.admitHello(hello, peer);
        }
        if (why != null) {
            releaseAttachment(first.attachment());
            refuse(e, why);
            return;
        }
        Session<E, A> s = new Session<>(hello, e, peer, first.attachment(), first.auth());
        lock.lock();
        try {
            if (closed || pending.size() >= maxPending || pending.containsKey(hello.sessionId())) {
                releaseAttachment(s.attachment);
                refuse(e, closed ? "the destination is shutting down" : pending.containsKey(hello.sessionId()) ? "session id already in use"
                        : "the destination has " + maxPending + " handshakes pending; try again");
                return;
            }
            pending.put(hello.sessionId(), s);
            changed.signalAll();
            long deadline = System.nanoTime() + timeoutNs;
            while (s.joined < s.background.length && !closed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            pending.remove(hello.sessionId());
            if (s.joined < s.background.length || closed) {
                s.abandoned = true;
                discard(s, closed ? "the destination is shutting down" : "only " + s.joined + " of " + s.background.length
                        + " background streams joined within " + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms");
                return;
            }
        } catch (InterruptedException x) {
            pending.remove(hello.sessionId());
            discard(s, "the destination is shutting down");
            throw x;
        } finally {
            lock.unlock();
        }
        if (!ready.offer(s)) {
            discard(s, "the destination has " + ready.capacity() + " migrations waiting to be accepted; try again");
        }
    }

    private void join(E e, String peer, First<A> first) throws InterruptedException {
        lock.lock();
        try {
            long deadline = System.nanoTime() + timeoutNs;
            Session<E, A> s;
            // The HELLO may still be in another handshake thread: wait for it.
            while ((s = pending.get(first.sessionId())) == null && !closed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            if (s == null || s.abandoned) {
                refuse(e, "JOIN for unknown session " + Long.toHexString(first.sessionId()));
                return;
            }
            long stream = first.stream();
            if (first.streams() != s.background.length || stream < 0 || stream >= s.background.length || s.background[(int) stream] != null) {
                refuse(e, "JOIN for channel " + stream + " of " + first.streams() + " does not fit session "
                        + Long.toHexString(first.sessionId()) + " with " + s.background.length + " background channels");
                return;
            }
            String why = joinRefusal(s, e);
            if (why == null && s.auth != null && !s.auth.checkJoin(first.sessionId(), stream, first.streams(), first.joinMac())) {
                LOG.log(System.Logger.Level.WARNING, "refused: JOIN from " + peer + " for channel " + stream + " of session "
                        + Long.toHexString(first.sessionId()) + " (source " + s.peer + ") does not carry that session's MAC");
                why = AuthExchange.REFUSED + ": JOIN not authenticated for this session";
            }
            if (why == null) {
                why = guard.admitJoin(s.hello, (int) stream, peer);
            }
            if (why != null) {
                refuse(e, why);
                return;
            }
            s.background[(int) stream] = e;
            s.joined++;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Refuses a session that will not be accepted: its background endpoints closed, the urgent one told why. */
    protected final void discard(Session<E, A> s, String why) {
        for (int i = 0; i < s.background.length; i++) {
            E b = s.background(i);
            if (b != null && b != s.urgent) {
                closeEndpoint(b);
            }
        }
        releaseAttachment(s.attachment);
        refuse(s.urgent, why);
    }

    @Override
    public Connection accept(MessageHandler handler, Duration timeout) {
        return ready.accept(uri, timeout, s -> start(s, handler), () -> closed, () -> failure);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        stopAccepting();
        signal();
        if (acceptor != null) {
            try {
                acceptor.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        closeListening();
        for (Session<E, A> s : ready.drain()) {
            discard(s, "the destination stopped listening before accepting this migration");
        }
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + "[" + uri + "]";
    }
}
