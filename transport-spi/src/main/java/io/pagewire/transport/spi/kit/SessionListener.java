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
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Session admission for listeners whose sources open one endpoint per stream (a socket, a queue
 * pair): written once for every such transport. An acceptor thread takes endpoints; a short-lived
 * thread per endpoint reads its first message and either starts a pending session (HELLO) or joins
 * one (JOIN). A session whose background streams have all joined waits in a {@link ReadyQueue} for
 * {@link #accept}, which answers HELLO_ACK and starts the connection through {@link #start}.
 *
 * <h2>Bounds against slow and hostile peers</h2>
 * Every endpoint has one overall <b>handshake deadline</b> ({@link #timeoutNs} from its accept, the
 * {@code handshake-timeout} URI option of a transport): reading its first message and waiting for
 * its HELLO or its JOINs all end there, however slowly the bytes drip. Handshake threads, pending
 * sessions and ready sessions are bounded, and so are the bytes of first messages in progress
 * ({@link HandshakeBudget}). A stranger cannot hold those bounds against a real source: when every
 * handshake slot is taken, the <b>oldest</b> endpoint still reading its first message (or a JOIN still
 * waiting for its HELLO) is evicted to make room, and when every pending-session slot is taken the
 * oldest pending session is dropped. A real source finishes its handshake within milliseconds, so it is
 * never the oldest; a peer that drips is.
 *
 * <h2>Binding JOINs to their session</h2>
 * A JOIN joins the session its HELLO opened, only: it must come from the same peer as the HELLO
 * ({@link #peerIdentity}: the same host for TCP, the same process for unix sockets); a second HELLO
 * with a session id in use, or a second JOIN for a channel already joined, refuses <b>both</b> claims
 * (the session is dropped, or, once started, aborted): which of the two was the source cannot be told
 * without authentication, and a stranger must never silently become a channel. Authentication
 * ({@link HandshakeGuard}) adds proof on top.
 *
 * <p>HELLOs are checked by {@link Handshakes#refusal}, the transport's own {@link #transportRefusal}
 * and the {@link HandshakeGuard}; JOINs by the session they name and the guard. A refused source is
 * told why ({@link #refuse}) and closed; the listener goes on.
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
        private final String identity;
        private final long startedNs = System.nanoTime();
        private final AuthExchange.Result auth;
        private int joined;        // guarded by the listener lock
        private boolean abandoned; // guarded by the listener lock
        private String contested;  // guarded by the listener lock: why both claims to this session are refused
        private Connection connection; // guarded by the listener lock: once started

        Session(Hello hello, E urgent, String peer, String identity, A attachment, AuthExchange.Result auth) {
            this.hello = hello;
            this.auth = auth;
            this.urgent = urgent;
            this.background = new Object[hello.channels()];
            this.peer = peer;
            this.identity = identity;
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
    /** Sessions that left pending (ready or started) within the handshake timeout, by id: late duplicates are caught. */
    private final Map<Long, Session<E, A>> recent = new HashMap<>(); // guarded by lock
    /** Endpoints still reading their first message, or JOINs waiting for their HELLO: evictable, oldest first. */
    private final Map<E, Attempt<E>> evictable = new LinkedHashMap<>(); // guarded by lock
    /** Bytes of first messages being read. */
    protected final HandshakeBudget budget = new HandshakeBudget(HandshakeBudget.DEFAULT_BYTES);
    private final AtomicLong evictions = new AtomicLong();
    private final ReadyQueue<Session<E, A>> ready;
    private final HandshakeGuard guard;
    private String uri;
    private Thread acceptor;
    private volatile boolean closed;
    private volatile TransportException failure;

    /** One endpoint in its handshake: when it must be done, and whether it was evicted to make room. */
    private static final class Attempt<E> {
        final E endpoint;
        final long deadlineNs;
        volatile boolean evicted;

        Attempt(E endpoint, long deadlineNs) {
            this.endpoint = endpoint;
            this.deadlineNs = deadlineNs;
        }
    }

    /** As the 5-argument constructor, with the connect timeout as the handshake deadline. */
    protected SessionListener(TransportContext context, int maxHandshakes, int maxPending, int maxReady) {
        this(context, context.connectTimeoutNs(), maxHandshakes, maxPending, maxReady);
    }

    /**
     * @param handshakeTimeoutNs the overall deadline of an endpoint's handshake, from its accept
     * @param maxHandshakes most endpoints in their handshake at once
     * @param maxPending most sessions waiting for their JOINs
     * @param maxReady most sessions waiting for {@link #accept}
     */
    protected SessionListener(TransportContext context, long handshakeTimeoutNs, int maxHandshakes, int maxPending, int maxReady) {
        if (handshakeTimeoutNs <= 0) {
            throw new IllegalArgumentException("handshake timeout " + handshakeTimeoutNs + " ns is not positive");
        }
        this.context = context;
        this.timeoutNs = handshakeTimeoutNs;
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
     * Reads the endpoint's first message (preamble and HELLO or JOIN) by {@code deadlineNs}
     * ({@link System#nanoTime()}), however slowly its bytes arrive, and with buffers that grow only as
     * bytes arrive, reserved from {@link #budget}.
     *
     * @return what arrived, or null when the peer left without a word (a port probe)
     * @throws TransportException what is wrong with it, or the deadline passed (the source is told)
     * @throws IOException when the source broke off or was evicted (it is only closed)
     */
    protected abstract First<A> readFirst(E endpoint, long deadlineNs) throws IOException;

    /**
     * Wakes a thread reading this endpoint's first message for good (it was evicted to make room for
     * another source): its read fails. Default: not possible, the newcomer is refused instead.
     *
     * @return true when the endpoint was woken
     */
    protected boolean evict(E endpoint) {
        return false;
    }

    /**
     * @return who is at the other end, as precisely as the medium tells without authentication (the
     *         peer host, the peer process), for binding JOINs to their HELLO's peer; null when unknown
     *         (not checked)
     */
    protected String peerIdentity(E endpoint) {
        return null;
    }

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
        refuseFrameMac(hello, peer);
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

    /** @return whether a JOIN may act on {@code s}: it carries the session's MAC, or the session is not authenticated */
    private static <E, A> boolean joinAuthenticated(Session<E, A> s, First<A> first, String peer) {
        if (s.auth == null || s.auth.checkJoin(first.sessionId(), first.stream(), first.streams(), first.joinMac())) {
            return true;
        }
        LOG.log(System.Logger.Level.WARNING, "refused: JOIN from " + peer + " for channel " + first.stream() + " of session "
                + Long.toHexString(first.sessionId()) + " (source " + s.peer + ") does not carry that session's MAC");
        return false;
    }

    /**
     * Refuses a source that asks for per-frame MACs ({@link #frameMacRefusal}); {@link #authenticate}
     * calls it first, a transport may call it as soon as the HELLO is decoded.
     *
     * @throws TransportException {@code HANDSHAKE} when {@code hello} asks for them
     */
    protected final void refuseFrameMac(Hello hello, String peer) {
        String why = frameMacRefusal(hello, uri.substring(0, Math.max(0, uri.indexOf(':'))));
        if (why != null) {
            LOG.log(System.Logger.Level.WARNING, "refused: source " + peer + ": " + why);
            throw new TransportException(Kind.HANDSHAKE, why);
        }
    }

    /**
     * A source that asks for a MAC after every frame (HELLO flag {@link Hello#FLAG_FRAME_MAC}, what
     * {@code frame-mac=on} sets on {@code aeron:}) is refused by a transport that does not make or check
     * them: accepting it would run the migration without the integrity that source asked for.
     *
     * @return why {@code hello} is refused, or null when it does not ask for per-frame MACs
     */
    public static String frameMacRefusal(Hello hello, String scheme) {
        if (!hello.frameMac()) {
            return null;
        }
        return "the source asks for a MAC after every frame (frame-mac=on, HELLO flag 0x" + Integer.toHexString(Hello.FLAG_FRAME_MAC)
                + "), which " + scheme + ": does not provide (only aeron: does); remove frame-mac=on from the source's URI"
                + (scheme.equals("tcp") ? " (tls=on authenticates every byte on tcp:)" : "");
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
                if (!handshakeSlots.tryAcquire() && !(evictOldest() && handshakeSlots.tryAcquire(EVICTION_WAIT_MS, TimeUnit.MILLISECONDS))) {
                    refuse(e, "the destination has " + maxHandshakes + " handshakes in progress; try again");
                    continue;
                }
                Attempt<E> a = new Attempt<>(e, System.nanoTime() + timeoutNs);
                lock.lock();
                try {
                    evictable.put(e, a);
                } finally {
                    lock.unlock();
                }
                try {
                    Thread.ofPlatform().daemon().name(acceptor.getName() + "-handshake").start(() -> {
                        try {
                            handshake(a);
                        } finally {
                            notEvictable(a);
                            handshakeSlots.release();
                        }
                    });
                } catch (RuntimeException | OutOfMemoryError x) {
                    notEvictable(a);
                    handshakeSlots.release();
                    closeEndpoint(e);
                    throw x;
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
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

    /** How long a newcomer waits for the slot of an evicted handshake. */
    private static final long EVICTION_WAIT_MS = 1000;

    /**
     * Evicts the oldest endpoint still reading its first message (or a JOIN still waiting for its HELLO).
     *
     * @return true when one was evicted (its slot comes free as its thread ends)
     */
    private boolean evictOldest() {
        lock.lock();
        try {
            for (Iterator<Attempt<E>> it = evictable.values().iterator(); it.hasNext(); ) {
                Attempt<E> a = it.next();
                if (a.evicted) {
                    continue;
                }
                if (!evict(a.endpoint)) {
                    return false;
                }
                a.evicted = true;
                it.remove();
                evictions.incrementAndGet();
                changed.signalAll(); // a JOIN waiting for its HELLO looks at its flag
                LOG.log(System.Logger.Level.DEBUG, "every handshake slot is taken: evicted the oldest handshake in progress, "
                        + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - (a.deadlineNs - timeoutNs)) + " ms old");
                return true;
            }
            return false;
        } finally {
            lock.unlock();
        }
    }

    /** @return false when {@code a} was evicted already; else it is not evictable from now on */
    private boolean takeOut(Attempt<E> a) {
        lock.lock();
        try {
            evictable.remove(a.endpoint, a);
            return !a.evicted;
        } finally {
            lock.unlock();
        }
    }

    private void notEvictable(Attempt<E> a) {
        lock.lock();
        try {
            evictable.remove(a.endpoint, a);
        } finally {
            lock.unlock();
        }
    }

    /** @return handshakes evicted so far to make room for newer ones */
    public final long evictions() {
        return evictions.get();
    }

    /** @return handshake slots in all: endpoints that may be in their handshake at once */
    public final int maxHandshakes() {
        return maxHandshakes;
    }

    /** @return handshake slots in use (endpoints in their handshake) */
    public final int handshakesInProgress() {
        return maxHandshakes - handshakeSlots.availablePermits();
    }

    /** @return bytes of first messages being read */
    public final long handshakeBytes() {
        return budget.inUse();
    }

    private void signal() {
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void handshake(Attempt<E> a) {
        E e = a.endpoint;
        String peer = "unknown peer";
        try {
            peer = peerName(e);
            First<A> first = readFirst(e, a.deadlineNs);
            if (first == null || a.evicted) {
                if (first != null) {
                    releaseAttachment(first.attachment());
                }
                closeEndpoint(e);
                return;
            }
            switch (first.type()) {
                case FrameType.HELLO -> {
                    if (context.authentication() != null && first.auth() == null) {
                        // a transport that forgot to call authenticate(): never let such a session in
                        throw new IllegalStateException(getClass().getName() + " read a HELLO without authenticating it");
                    }
                    if (!takeOut(a)) {
                        releaseAttachment(first.attachment());
                        closeEndpoint(e); // evicted just as its HELLO arrived
                        return;
                    }
                    hello(e, peer, first, a.deadlineNs);
                }
                case FrameType.JOIN -> join(a, peer, first);
                default -> throw new WireException("expected HELLO or JOIN as the first frame, got " + FrameType.name(first.type()));
            }
        } catch (TransportException x) {
            if (a.evicted) {
                closeEndpoint(e);
            } else {
                refuse(e, x.getMessage());
            }
        } catch (IOException x) {
            // A source that breaks off its own handshake: its connect() reports the cause; we only close.
            LOG.log(System.Logger.Level.DEBUG, "handshake with " + peer + " broke off: " + x.getMessage());
            closeEndpoint(e);
        } catch (InterruptedException x) {
            Thread.currentThread().interrupt();
            closeEndpoint(e);
        }
    }

    private void hello(E e, String peer, First<A> first, long deadline) throws InterruptedException {
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
        Session<E, A> s = new Session<>(hello, e, peer, peerIdentity(e), first.attachment(), first.auth());
        String id = Long.toHexString(hello.sessionId());
        lock.lock();
        try {
            expireRecent();
            Session<E, A> other = pending.get(hello.sessionId());
            if (other == null) {
                other = recent.get(hello.sessionId());
            }
            if (other != null) {
                String twice = "session id " + id + " claimed by two HELLOs (from " + other.peer + " and " + peer
                        + "): both are refused";
                contest(other, twice);
                releaseAttachment(s.attachment);
                refuse(e, twice);
                return;
            }
            if (!closed && pending.size() >= maxPending) {
                dropOldestPending();
            }
            if (closed || pending.size() >= maxPending) {
                releaseAttachment(s.attachment);
                refuse(e, closed ? "the destination is shutting down" : "the destination has " + maxPending + " handshakes pending; try again");
                return;
            }
            pending.put(hello.sessionId(), s);
            changed.signalAll();
            while (s.joined < s.background.length && !closed && s.contested == null) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            pending.remove(hello.sessionId(), s);
            if (s.joined < s.background.length || closed || s.contested != null) {
                s.abandoned = true;
                discard(s, closed ? "the destination is shutting down" : s.contested != null ? s.contested
                        : "only " + s.joined + " of " + s.background.length + " background streams joined within the handshake timeout of "
                        + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms");
                return;
            }
            recent.put(hello.sessionId(), s);
        } catch (InterruptedException x) {
            pending.remove(hello.sessionId(), s);
            discard(s, "the destination is shutting down");
            throw x;
        } finally {
            lock.unlock();
        }
        if (!ready.offer(s)) {
            discard(s, "the destination has " + ready.capacity() + " migrations waiting to be accepted; try again");
        }
    }

    private void join(Attempt<E> a, String peer, First<A> first) throws InterruptedException {
        E e = a.endpoint;
        String id = Long.toHexString(first.sessionId());
        lock.lock();
        try {
            Session<E, A> s;
            // The HELLO may still be in another handshake thread: wait for it (evictable meanwhile).
            while ((s = pending.get(first.sessionId())) == null && !closed && !a.evicted) {
                expireRecent();
                Session<E, A> done = recent.get(first.sessionId());
                if (done != null && !joinAuthenticated(done, first, peer)) {
                    // Without that session's MAC it is a stranger: turned away, the session undisturbed.
                    refuse(e, AuthExchange.REFUSED + ": JOIN not authenticated for this session");
                    return;
                }
                if (done != null && done.auth != null) {
                    // It carries the MAC, which has no nonce: the session's own JOIN played back by someone who saw it. The
                    // channel is taken by the first, authenticated JOIN; only the copy is turned away, the session goes on.
                    refuse(e, "JOIN for channel " + first.stream() + " of session " + id + " after every channel joined (a replayed JOIN)");
                    return;
                }
                if (done != null) {
                    // Every channel of that session joined already: two peers claim one channel.
                    String why = "JOIN for channel " + first.stream() + " of session " + id + " from " + peer
                            + " after every channel joined: two peers claim one channel, both are refused";
                    contest(done, why);
                    refuse(e, why);
                    return;
                }
                long left = a.deadlineNs - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                changed.awaitNanos(left);
            }
            if (a.evicted) {
                closeEndpoint(e);
                return;
            }
            evictable.remove(e, a); // bound to a session from here on (or refused)
            if (s == null || s.abandoned) {
                refuse(e, "JOIN for unknown session " + id + " (no HELLO with that session id within the handshake timeout of "
                        + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms)");
                return;
            }
            long stream = first.stream();
            if (first.streams() != s.background.length || stream < 0 || stream >= s.background.length
                    || (stream == 0 && s.hello.sharedChannel())) { // a shared session's channel 0 is its HELLO's connection
                refuse(e, "JOIN for channel " + stream + " of " + first.streams() + " does not fit session "
                        + id + " with " + s.background.length + " background channels");
                return;
            }
            String identity = peerIdentity(e);
            if (s.identity != null && !s.identity.equals(identity)) {
                refuse(e, "JOIN for channel " + stream + " of session " + id + " from " + peer + ", but its HELLO came from "
                        + s.peer + ": a JOIN must come from the peer that sent the HELLO");
                return;
            }
            if (!joinAuthenticated(s, first, peer)) {
                // Checked before the double-JOIN rule: a stranger's JOIN must not make the session's own channels contested.
                refuse(e, AuthExchange.REFUSED + ": JOIN not authenticated for this session");
                return;
            }
            if (s.background[(int) stream] != null && s.auth != null) {
                refuse(e, "channel " + stream + " of session " + id + " joined already (a replayed JOIN from " + peer + ")");
                return;
            }
            if (s.background[(int) stream] != null) {
                String why = "channel " + stream + " of session " + id + " joined twice (the second JOIN from " + peer
                        + "): two peers claim one channel, both are refused";
                contest(s, why);
                refuse(e, why);
                return;
            }
            String why = joinRefusal(s, e);
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

    /**
     * Two peers claim one session (or one of its channels): refuses it. Pending: its HELLO's thread
     * discards it; ready: it is discarded when its turn comes; started: its connection is aborted.
     * Called with the lock held.
     */
    private void contest(Session<E, A> s, String why) {
        if (s.contested != null) {
            return;
        }
        s.contested = why;
        LOG.log(System.Logger.Level.WARNING, why);
        changed.signalAll();
        if (s.connection != null) {
            Connection c = s.connection;
            Thread.ofPlatform().daemon().name("pagewire-contested-session").start(() -> c.abort(why));
        }
    }

    /** Drops the pending session that has waited longest for its JOINs (lock held): a newer HELLO needs the slot. */
    private void dropOldestPending() {
        Session<E, A> oldest = null;
        for (Session<E, A> s : pending.values()) {
            if (s.contested == null && (oldest == null || s.startedNs - oldest.startedNs < 0)) {
                oldest = s;
            }
        }
        if (oldest != null) {
            oldest.contested = "every pending-session slot is taken and this session waited longest for its JOINs; try again";
            pending.remove(oldest.hello.sessionId(), oldest);
            changed.signalAll();
        }
    }

    /** Forgets sessions that left pending longer than the handshake timeout ago (lock held). */
    private void expireRecent() {
        long now = System.nanoTime();
        recent.values().removeIf(s -> now - s.startedNs > 2 * timeoutNs);
    }

    /** @return the connection, or null when the session was contested meanwhile (then refused) */
    private Connection startUnlessContested(Session<E, A> s, MessageHandler handler) {
        lock.lock();
        try {
            if (s.contested != null) {
                discard(s, s.contested);
                return null;
            }
        } finally {
            lock.unlock();
        }
        Connection c = start(s, handler);
        if (c == null) {
            return null;
        }
        String why;
        lock.lock();
        try {
            s.connection = c;
            why = s.contested; // contested while starting
        } finally {
            lock.unlock();
        }
        if (why != null) {
            c.abort(why);
        }
        return c;
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
        return ready.accept(uri, timeout, s -> startUnlessContested(s, handler), () -> closed, () -> failure);
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
