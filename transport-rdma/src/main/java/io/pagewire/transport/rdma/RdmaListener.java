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
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Accepts RDMA sources: the kit's session admission over queue pairs. The acceptor takes a
 * connection request, creates its queue pair with receive buffers in the device's shared
 * protection domain (a queue pair needs one before its first message says which session it
 * belongs to) and accepts it; the first message is a HELLO (with RDMA's queue setup) or a JOIN.
 * {@link #accept} registers the destination RAM (all of it with pin-all), answers HELLO_ACK with
 * the registrations and starts the connection.
 */
final class RdmaListener extends SessionListener<Channel, Protocol.Setup> {
    private static final int MAX_HANDSHAKES = 16;
    private static final int MAX_PENDING_SESSIONS = 8;
    private static final int MAX_READY_SESSIONS = 4;
    private static final System.Logger LOG = System.getLogger(RdmaListener.class.getName());

    private final RdmaOptions options;
    private final RdmaServer server;
    private final Map<String, SharedDomain> domains = new HashMap<>(); // guarded by itself
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
        SharedDomain domain;
        try {
            domain = domain(ep);
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "no protection domain for " + ep.peerAddress() + ": " + e.getMessage());
            ep.reject();
            ep.close();
            return null;
        }
        Channel ch;
        try {
            ch = new Channel("accepted", ep, domain.pd, options.queueDepth(), options.queueDepth() + 8, true, 0, domain::release);
        } catch (VerbsException e) {
            LOG.log(System.Logger.Level.DEBUG, "setting up a queue pair for " + ep.peerAddress() + " failed: " + e.getMessage());
            return null; // the channel closed the endpoint and released the domain
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

    /** @return the device's shared domain, retained once for the caller */
    private SharedDomain domain(RdmaEndpoint ep) throws VerbsException {
        synchronized (domains) {
            if (closing) {
                throw new VerbsException("the listener is closed");
            }
            SharedDomain d = domains.get(ep.device().name());
            if (d == null) {
                d = new SharedDomain(ep.device().allocPd());
                domains.put(ep.device().name(), d);
            }
            d.retain();
            return d;
        }
    }

    private SharedDomain domainOf(Channel ch) {
        synchronized (domains) {
            return domains.get(ch.endpoint.device().name());
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
        return domainOf(ch) == domainOf(s.urgent()) ? null : "the background queue pair arrived on another RDMA device than the urgent one";
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
        SharedDomain domain = domainOf(s.urgent());
        if (domain == null || !domain.retain()) {
            discard(s, "the destination stopped listening before accepting this migration");
            throw new TransportException(Kind.CLOSED, "listener " + uri() + " is closed");
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
        synchronized (domains) {
            for (SharedDomain d : domains.values()) {
                d.release(); // the listener's own reference; accepted connections keep theirs
            }
            domains.clear();
        }
    }
}
