package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.RdmaFabric;
import io.pagewire.transport.rdma.verbs.RdmaServer;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.kit.SessionListener;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Accepts RDMA sources: the kit's session admission over queue pairs. The acceptor takes a
 * connection request, creates its queue pair with receive buffers and accepts it; the first
 * message is a HELLO (with RDMA's queue setup) or a JOIN. Each session has a protection domain of
 * its own ({@link SessionDomain}): a queue pair's domain is fixed at creation, before its first
 * message is read, so every connect request gets a new domain, which the urgent queue pair's request
 * (or, failing that, its HELLO) claims for its session; a background queue pair whose request's
 * private data names a claimed session that has not started is created in that session's domain. {@link #accept} seals the session's domain (disconnecting
 * any other queue pair in it), then registers the destination RAM there (all of it with pin-all),
 * answers HELLO_ACK with the registrations and starts the connection. A stranger's queue pair thus
 * never shares a domain with registered destination RAM: its RDMA WRITEs fail with a remote access
 * error whatever rkey it knows.
 */
final class RdmaListener extends SessionListener<Channel, Protocol.Setup> {
    private static final int MAX_HANDSHAKES = 16;
    private static final int MAX_PENDING_SESSIONS = 8;
    private static final int MAX_READY_SESSIONS = 4;
    private static final System.Logger LOG = System.getLogger(RdmaListener.class.getName());

    private final RdmaOptions options;
    private final RdmaServer server;
    /** Session id -> the domain its HELLO's queue pair was created in, until the session starts; guarded by itself. */
    private final Map<Long, SessionDomain> sessions = new HashMap<>();
    /** Every live accepted queue pair's domain; guarded by {@link #sessions}. */
    private final Map<RdmaEndpoint, SessionDomain> domains = new IdentityHashMap<>();
    private volatile boolean closing;

    RdmaListener(RdmaFabric fabric, TransportUri uri, RdmaOptions options, TransportContext context) {
        super(context, MAX_HANDSHAKES, MAX_PENDING_SESSIONS, MAX_READY_SESSIONS);
        this.options = options;
        try {
            this.server = fabric.listen(uri.requireHost(), uri.requirePort());
        } catch (VerbsException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "rdma: cannot listen on " + uri.text() + ": " + e.getMessage(), e);
        }
        startAccepting(uri.withPort(server.port()).text(), "pagewire-rdma-accept-" + server.port());
    }

    @Override
    protected Channel awaitEndpoint() {
        RdmaEndpoint ep;
        try {
            ep = server.awaitRequest(TimeUnit.MILLISECONDS.toNanos(200));
        } catch (VerbsException e) {
            if (closing) {
                return null;
            }
            throw new TransportException(Kind.CONNECT_FAILED, "rdma: listener " + uri() + " stopped accepting: " + e.getMessage(), e);
        }
        if (ep == null) {
            return null;
        }
        Protocol.ConnectRequest named = Protocol.ConnectRequest.decode(ep.privateData());
        SessionDomain joined = null;
        if (named != null && !named.urgent()) {
            synchronized (sessions) {
                joined = sessions.get(named.sessionId());
            }
        }
        if (joined != null) {
            // Created and accepted while the session's domain cannot be sealed: a queue pair is either
            // in it before the session starts (and disconnected then, unless it is the session's own)
            // or never.
            synchronized (joined) {
                if (joined.admit(ep)) {
                    return open(ep, joined);
                }
            }
        }
        SessionDomain own;
        try {
            own = new SessionDomain(ep.device().allocPd());
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "no protection domain for " + ep.peerAddress() + ": " + e.getMessage());
            ep.reject();
            ep.close();
            return null;
        }
        own.admit(ep);
        Channel ch = open(ep, own);
        if (ch != null && named != null && named.urgent()) {
            // Claimed before the request is accepted: the source connects its background queue pair only after
            // this one is established, so the background's request always finds the session here.
            claim(ch, named.sessionId());
        }
        return ch;
    }

    /** Creates the queue pair of an admitted request in its domain and accepts it; null when that fails. */
    private Channel open(RdmaEndpoint ep, SessionDomain domain) {
        boolean closed;
        synchronized (sessions) {
            closed = closing;
            if (!closed) {
                domains.put(ep, domain);
            }
        }
        if (closed) {
            LOG.log(System.Logger.Level.DEBUG, "refusing " + ep.peerAddress() + ": the listener is closed");
            ep.reject();
            ep.close();
            domain.leave(ep);
            return null;
        }
        Channel ch;
        try {
            ch = new Channel("accepted", ep, domain.pd, options.queueDepth(), options.queueDepth() + 8, true, 0, () -> leave(ep, domain));
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "setting up a queue pair for " + ep.peerAddress() + " failed: " + e.getMessage());
            return null; // the channel closed the endpoint and left the domain
        }
        try {
            ep.accept();
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "accepting " + ep.peerAddress() + " failed: " + e.getMessage());
            ch.close();
            return null;
        }
        return ch;
    }

    /** An accepted queue pair is gone: it leaves its domain (and, if its HELLO claimed it, the session table). */
    private void leave(RdmaEndpoint ep, SessionDomain domain) {
        synchronized (sessions) {
            domains.remove(ep);
            if (domain.owner == ep) {
                sessions.remove(domain.sessionId, domain);
            }
        }
        domain.leave(ep);
    }

    /** @return whether a HELLO for {@code sessionId} has claimed a protection domain that is not sealed yet (for tests) */
    boolean claimed(long sessionId) {
        synchronized (sessions) {
            return sessions.containsKey(sessionId);
        }
    }

    /** @return the domain {@code ch}'s queue pair was created in, while it lives */
    SessionDomain domainOf(Channel ch) {
        synchronized (sessions) {
            return domains.get(ch.endpoint);
        }
    }

    /**
     * {@code ch}'s domain becomes the session's, where the background queue pair naming the session
     * will be created: when its connect request names the session it opens (so before the source can
     * connect its background queue pair), else when its HELLO arrives (a source that names nothing in
     * its requests: then its background queue pair may arrive first and be refused). Nothing is
     * registered in the domain before the session starts, and starting it disconnects every queue pair
     * in the domain that is not the session's own.
     */
    private void claim(Channel ch, long sessionId) {
        synchronized (sessions) {
            SessionDomain d = domains.get(ch.endpoint);
            if (d != null && d.owner == null && !sessions.containsKey(sessionId)) {
                d.owner = ch.endpoint;
                d.sessionId = sessionId;
                sessions.put(sessionId, d);
            }
        }
    }

    /** A HELLO for {@code sessionId} arrived on {@code ch}: claims its domain, or checks it against the connect request's claim. */
    private void claimByHello(Channel ch, long sessionId) {
        claim(ch, sessionId);
        synchronized (sessions) {
            SessionDomain d = domains.get(ch.endpoint);
            if (d != null && d.owner == ch.endpoint && d.sessionId != sessionId) {
                throw new TransportException(Kind.HANDSHAKE, "the HELLO opens session " + Long.toHexString(sessionId)
                        + " but its queue pair's connect request named session " + Long.toHexString(d.sessionId));
            }
        }
    }

    @Override
    protected First<Protocol.Setup> readFirst(Channel ch, long deadlineNs) throws IOException {
        MemorySegment msg;
        try {
            msg = ch.awaitHandshake(deadlineNs);
        } catch (VerbsException e) {
            throw new TransportException(Kind.CONNECTION_LOST, "handshake with " + ch.endpoint.peerAddress() + " broke off: " + e.getMessage(), e);
        }
        if (msg == null) {
            throw new TransportException(Kind.HANDSHAKE, "no HELLO or JOIN within " + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms");
        }
        try {
            Handshake.First first = Handshake.read(msg, Wire.MAX_HELLO_BYTES);
            if (first.type() == FrameType.HELLO) {
                Hello hello = Hello.decode(first.payload(), (int) first.payload().byteSize());
                claimByHello(ch, hello.sessionId());
                refuseFrameMac(hello, peerName(ch));
                if (context.authentication() == null) {
                    // A HELLO that does not fit is refused for that, whatever follows. (With authentication the layout
                    // is looked at only once the source has proved itself.)
                    String why = Handshakes.refusal(context, hello);
                    if (why != null) {
                        throw new TransportException(Kind.HANDSHAKE, why);
                    }
                }
                MemorySegment[] setupAndAuth = Handshake.setupAndAuth(first.after());
                Protocol.Setup setup = Protocol.Setup.decode(setupAndAuth[0], 0, Protocol.Setup.LENGTH);
                if (hello.authenticated() != (setupAndAuth[1] != null)) {
                    throw new io.pagewire.transport.spi.wire.WireException("a HELLO " + (hello.authenticated() ? "asking for" : "without")
                            + " authentication " + (setupAndAuth[1] != null ? "followed" : "not followed") + " by an AUTH frame");
                }
                byte[] auth1 = setupAndAuth[1] == null ? null : setupAndAuth[1].toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
                return First.hello(hello, setup, authenticate(hello, authChannel(ch, auth1), peerName(ch)));
            }
            if (first.type() == FrameType.JOIN) {
                long macLength = first.payload().byteSize();
                return First.join(first.header().first(), first.header().count(), Integer.toUnsignedLong(first.header().region()),
                        macLength == 0 ? null : first.payload().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            throw new io.pagewire.transport.spi.wire.WireException("expected HELLO or JOIN as the first frame, got " + Protocol.name(first.type()));
        } catch (Handshake.VersionMismatch e) {
            throw new TransportException(Kind.HANDSHAKE, "this destination speaks pagewire wire version " + Wire.VERSION
                    + "; the source speaks version " + e.version);
        } finally {
            ch.releaseHandshake();
        }
    }

    /**
     * The destination's side of the kit's authentication on an urgent queue pair: AUTH 1 came with the
     * HELLO; AUTH 2 is this side's first message (the handshake buffer posted again first, for AUTH 3);
     * the HELLO_ACK or a refusal is its second.
     */
    private AuthExchange.Channel authChannel(Channel ch, byte[] auth1) {
        long deadline = System.nanoTime() + timeoutNs;
        return new AuthExchange.Channel() {
            private byte[] first = auth1;

            @Override
            public void send(byte[] message) {
                try {
                    ch.handshakeMessages(2);
                    ch.rearmHandshake();
                } catch (VerbsException e) {
                    throw new TransportException(Kind.CONNECTION_LOST, "rdma: " + e.getMessage(), e);
                }
                Message m = ch.begin();
                Handshake.auth(m, message);
                ch.post(m);
            }

            @Override
            public byte[] receive(int maxBytes) {
                if (first != null) {
                    byte[] f = first;
                    first = null;
                    return f;
                }
                MemorySegment msg;
                try {
                    msg = ch.awaitHandshake(deadline);
                } catch (VerbsException e) {
                    throw new TransportException(Kind.CONNECTION_LOST, "authentication with " + ch.endpoint.peerAddress() + " broke off: "
                            + e.getMessage(), e);
                }
                if (msg == null) {
                    throw new TransportException(Kind.HANDSHAKE, "no AUTH message within " + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms");
                }
                return Handshake.authPayload(msg, "the source");
            }
        };
    }

    @Override
    protected String transportRefusal(Hello hello) {
        return hello.channels() == 1 ? null
                : "the source asks for " + hello.channels() + " background channels; rdma:// uses one background queue pair";
    }

    @Override
    protected String joinRefusal(Session<Channel, Protocol.Setup> s, Channel ch) {
        SessionDomain d = domainOf(ch);
        return d != null && d == domainOf(s.urgent()) ? null
                : "the background queue pair was not created in its session's protection domain (its connect request must name session "
                        + Long.toHexString(s.hello().sessionId()) + " in its private data, on the urgent queue pair's device)";
    }

    @Override
    protected void refuse(Channel ch, String why) {
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

    @Override
    protected void closeEndpoint(Channel ch) {
        ch.close();
    }

    @Override
    protected String peerName(Channel ch) {
        return ch.endpoint.peerAddress();
    }

    /** Registers, answers HELLO_ACK and starts the connection; null when the source went away meanwhile. */
    @Override
    protected Connection start(Session<Channel, Protocol.Setup> s, MessageHandler handler) {
        Hello h = s.hello();
        Channel background = s.background(0);
        SessionDomain domain = domainOf(s.urgent());
        List<RdmaEndpoint> strangers = null;
        if (domain != null) {
            strangers = domain.seal(s.urgent().endpoint, background.endpoint);
            synchronized (sessions) {
                sessions.remove(h.sessionId(), domain);
            }
        }
        if (strangers == null) {
            discard(s, "the destination stopped listening before accepting this migration");
            throw new TransportException(Kind.CLOSED, "listener " + uri() + " is closed");
        }
        for (RdmaEndpoint stranger : strangers) {
            LOG.log(System.Logger.Level.DEBUG, "disconnecting " + stranger.peerAddress() + ": it named session " + Long.toHexString(h.sessionId())
                    + " but is not one of its queue pairs");
            stranger.disconnect(); // its queue pair goes to the error state: it can execute nothing once RAM is registered
        }
        DestinationRam ram;
        try {
            ram = new DestinationRam(context.layout(), domain.pd, options, h.maxPagePayload());
        } catch (TransportException e) {
            domain.release();
            discard(s, "the destination cannot register its RAM: " + e.getMessage());
            throw e;
        }
        Protocol.Regions regions = ram.describe(options.queueDepth(), options.cacheChunks());
        if (regions.encodedLength() > Protocol.MAX_HANDSHAKE_PAYLOAD) {
            ram.close();
            domain.release();
            String why = "the destination's registration table needs " + regions.encodedLength() + " bytes, over rdma://'s "
                    + Protocol.MAX_HANDSHAKE_PAYLOAD + "-byte first message; use fewer regions";
            discard(s, why);
            throw new TransportException(Kind.INVALID_CONFIG, why);
        }
        s.urgent().setPeer(s.attachment().rxDepth(), 0);
        background.setPeer(s.attachment().rxDepth(), 0);
        RdmaConnection c = new RdmaConnection(Role.DESTINATION, s.peer(), context.layout(), options, h.maxPagePayload(), h.dataDigest(), handler,
                context.heartbeatIntervalNs(), context.peerTimeoutNs(), s.urgent(), background, domain::release, null, null, ram);
        try {
            Message m = s.urgent().begin();
            Handshake.accept(m, h.sessionId(), Handshakes.heartbeatMs(context), regions);
            s.urgent().post(m);
        } catch (TransportException e) {
            LOG.log(System.Logger.Level.DEBUG, "source " + s.peer() + " went away before HELLO_ACK: " + e.getMessage());
            c.close();
            return null;
        }
        c.start();
        return c;
    }

    @Override
    protected void stopAccepting() {
        closing = true;
        server.close();
    }

    @Override
    protected void closeListening() {
        synchronized (sessions) {
            closing = true;
            sessions.clear(); // each domain is released by its queue pairs and connection
        }
    }
}
