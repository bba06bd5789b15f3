package io.pagewire.transport.spi.kit.stream;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.SessionListener;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The listener of stream transports: accepts sockets, reads each one's preamble and first frame
 * ({@link SessionListener} does the admission), and starts a {@link StreamConnection} per accepted
 * session. A transport says how it tunes sockets and what its connections can do.
 *
 * @param <A> what the transport reads right after a HELLO ({@link #afterHello}); null if nothing
 */
public abstract class StreamListener<A> extends SessionListener<NativeSocket, A> {
    private static final System.Logger LOG = System.getLogger(StreamListener.class.getName());
    private static final int MAX_HANDSHAKES = 2 * Wire.MAX_CHANNELS + 8;
    private static final int MAX_PENDING_SESSIONS = 16;
    private static final int MAX_READY_SESSIONS = 8;
    /** The URI option that sets the overall deadline of a handshake at the destination, in milliseconds. */
    public static final String HANDSHAKE_TIMEOUT_OPTION = "handshake-timeout";
    /** Default handshake deadline: 10 s from accept to the first message read and every JOIN arrived. */
    public static final long DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
    /** How {@link #HANDSHAKE_TIMEOUT_OPTION} is described in a transport's option list. */
    public static final String HANDSHAKE_TIMEOUT_DESCRIPTION = "destination: overall deadline of a source's handshake in ms, from accept"
            + " until its HELLO (or JOIN) has arrived and every channel joined, 1..600000 (default " + DEFAULT_HANDSHAKE_TIMEOUT_MS
            + "); however slowly a peer sends, it holds a handshake slot no longer";

    private final NativeSocket server;
    /** Sockets this side already sent its preamble on (with AUTH 2): their answer goes without one. */
    private final Set<NativeSocket> answered = ConcurrentHashMap.newKeySet();
    private final String scheme;
    private final long timeoutMs;

    /**
     * @param server the listening socket (owned from here on)
     * @param uri the URI it is reached at
     * @param scheme for thread names and messages
     * @param handshakeTimeoutMs the overall deadline of a handshake ({@link #HANDSHAKE_TIMEOUT_OPTION})
     */
    protected StreamListener(TransportContext context, NativeSocket server, String uri, String scheme, long handshakeTimeoutMs) {
        super(context, TimeUnit.MILLISECONDS.toNanos(handshakeTimeoutMs), MAX_HANDSHAKES, MAX_PENDING_SESSIONS, MAX_READY_SESSIONS);
        this.server = server;
        this.scheme = scheme;
        this.timeoutMs = handshakeTimeoutMs;
        startAccepting(uri, "pagewire-" + scheme + "-accept-" + uri);
    }

    /** @return the value of {@link #HANDSHAKE_TIMEOUT_OPTION} in {@code uri} (ms), or the default */
    public static long handshakeTimeoutMs(TransportUri uri) {
        return uri.longOption(HANDSHAKE_TIMEOUT_OPTION, DEFAULT_HANDSHAKE_TIMEOUT_MS, 1, 600_000);
    }

    /** Tunes an accepted urgent socket (or, shared, background channel 0). */
    protected abstract void tuneUrgent(NativeSocket s, Hello hello) throws IOException;

    /** Tunes an accepted background socket. */
    protected abstract void tuneBackground(NativeSocket s, Hello hello) throws IOException;

    /** @return what a connection for this HELLO can do */
    protected abstract Set<Capability> capabilities(Hello hello);

    /** @return the nice value of the destination's background receive threads */
    protected abstract int backgroundNice();

    /**
     * Reads what the transport's sources send right after a HELLO on the same socket.
     *
     * @throws TransportException what is wrong with it (the source is told)
     */
    protected A afterHello(NativeSocket s, Hello hello) throws IOException {
        if (hello.sharedMemory()) {
            throw new TransportException(TransportException.Kind.HANDSHAKE, scheme + " cannot take memory handed over by a source"
                    + " (shared memory travels over unix:// sockets only)");
        }
        return null;
    }

    /** @return the connection of an accepted session (override to add what the transport read with its HELLO) */
    protected StreamConnection connection(KitConnection.Setup setup, Session<NativeSocket, A> s, NativeSocket[] background) {
        return new StreamConnection(scheme, setup, s.urgent(), background, 1, backgroundNice());
    }

    @Override
    protected NativeSocket awaitEndpoint() throws IOException {
        return server.accept(-1);
    }

    /**
     * Secures an accepted socket before anything is read from it (TLS: {@link TlsLayer#server}), by
     * {@code deadlineNs}. Default: nothing.
     *
     * @throws TransportException what the source is told when it fails
     */
    protected void secure(NativeSocket s, long deadlineNs) throws IOException {
    }

    @Override
    protected First<A> readFirst(NativeSocket s, long deadlineNs) throws IOException {
        s.receiveTimeoutMs(timeoutMs); // a safety net: every read below waits with the deadline
        s.sendTimeoutMs(timeoutMs);
        secure(s, deadlineNs);
        long version = StreamHandshake.readPreamble(s, deadlineNs);
        if (version < 0) {
            return null; // connected and left without a word (a port probe)
        }
        if (version != Wire.VERSION) {
            throw new TransportException(TransportException.Kind.HANDSHAKE, "this destination speaks pagewire wire version " + Wire.VERSION
                    + "; the source speaks version " + version);
        }
        StreamHandshake.Frame f = StreamHandshake.readFrame(s, Wire.MAX_HELLO_BYTES, deadlineNs, budget);
        return switch (f.type()) {
            case FrameType.HELLO -> {
                Hello hello = Hello.decode(MemorySegment.ofArray(f.payload()), f.payload().length, true);
                s.receiveTimeoutMs(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadlineNs - System.nanoTime())));
                StreamHandshake.AuthChannel channel = new StreamHandshake.AuthChannel(s, false);
                AuthExchange.Result auth;
                try {
                    auth = authenticate(hello, channel, peerName(s));
                } finally {
                    if (channel.preambleDone()) {
                        answered.add(s);
                    }
                }
                yield First.hello(hello, afterHello(s, hello), auth);
            }
            case FrameType.JOIN -> {
                if (f.payload().length != 0 && context.authentication() == null) {
                    // With authentication a JOIN carries its session's MAC; without, it has no payload.
                    throw new WireException("invalid JOIN frame: payload of " + f.payload().length + " bytes (a JOIN has none without authentication)");
                }
                yield First.join(f.first(), f.count(), Integer.toUnsignedLong(f.region()), f.payload().length == 0 ? null : f.payload());
            }
            default -> throw new WireException("expected HELLO or JOIN as the first frame, got " + FrameType.name(f.type()));
        };
    }

    @Override
    protected boolean evict(NativeSocket s) {
        s.shutdown(); // its handshake thread's poll or recv returns, and the thread closes it
        return true;
    }

    /** TCP: the peer's host (not its port: each connection has its own); unix: the peer process. */
    @Override
    protected String peerIdentity(NativeSocket s) {
        try {
            return s.isUnix() ? s.peerName().replaceFirst(" uid .*", "") : s.remoteAddress().getAddress().getHostAddress();
        } catch (IOException e) {
            return "gone: " + e.getMessage();
        }
    }

    @Override
    protected void refuse(NativeSocket s, String why) {
        try {
            s.sendTimeoutMs(1000);
            StreamHandshake.writeError(s, !answered.remove(s), why);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "could not send the refusal \"" + why + "\" to a source: " + e.getMessage());
        } finally {
            s.close();
        }
    }

    @Override
    protected void closeEndpoint(NativeSocket s) {
        answered.remove(s);
        s.close();
    }

    @Override
    protected String peerName(NativeSocket s) {
        try {
            return s.peerName();
        } catch (IOException e) {
            return "a source that is gone (" + e.getMessage() + ")";
        }
    }

    @Override
    protected Connection start(Session<NativeSocket, A> s, MessageHandler handler) {
        Hello h = s.hello();
        NativeSocket[] background = new NativeSocket[s.streams()];
        StreamConnection c = null;
        try {
            tuneUrgent(s.urgent(), h);
            for (int i = 0; i < background.length; i++) {
                background[i] = s.background(i);
                if (background[i] != s.urgent()) {
                    tuneBackground(background[i], h);
                }
                background[i].receiveTimeoutMs(0);
                background[i].sendTimeoutMs(0);
            }
            s.urgent().sendTimeoutMs(0);
            KitConnection.Setup setup = new KitConnection.Setup(Role.DESTINATION, s.peer(), context.layout(), handler,
                    context.heartbeatIntervalNs(), context.peerTimeoutNs(), h.maxPagePayload(), h.dataDigest(), h.sharedChannel(),
                    h.channels(), capabilities(h), 0);
            c = connection(setup, s, background);
            StreamHandshake.write(s.urgent(), !answered.remove(s.urgent()), FrameType.HELLO_ACK, 0, h.sessionId(),
                    Handshakes.heartbeatMs(context), null);
            c.start();
            return c;
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "source " + s.peer() + " went away before HELLO_ACK: " + e.getMessage());
            answered.remove(s.urgent());
            if (c != null) {
                c.close(); // releases the sockets
            } else {
                StreamHandshake.closeAll(s.urgent(), background);
            }
            return null;
        }
    }

    @Override
    protected void stopAccepting() {
        server.shutdown();
    }

    @Override
    protected void closeListening() {
        server.close();
    }

    /** @return the scheme, for messages */
    protected final String scheme() {
        return scheme;
    }
}
