package io.pagewire.transport.spi.tck;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The authentication part of the TCK: every transport runs it through a small subclass naming one
 * listen URI; the kit's handshake ({@code AuthExchange}) must behave the same on each. A migration
 * with a pre-shared key and with certificates moves its pages; the wrong key, a missing
 * certificate, a certificate of another CA, an identity not in {@code tls-authz}, and a destination
 * that cannot prove itself are each refused, the refused source learns nothing of the layout, and
 * the listener goes on serving. A real source's handshake recorded on the wire and played back, and a
 * JOIN into a waiting session carrying another session's proof (or none), are refused on each
 * transport's own wire ({@link AuthWire}, one adapter per transport), the session undisturbed.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
public abstract class AuthTck {
    private static final long MIB = 1 << 20;

    /** @return a URI to listen on without authentication options (port 0) */
    protected abstract String listenUri();

    /** @return the URI a source uses to reach this listener, without its authentication options */
    protected String connectUri(Listener listener) {
        return listener.uri();
    }

    /**
     * @return access to this transport's wire for the replayed-handshake and forged-JOIN rows; empty
     *         skips them (naming why)
     */
    protected Optional<AuthWire> authWire() {
        return Optional.empty();
    }

    private AuthWire requireWire() {
        Optional<AuthWire> w = authWire();
        assumeTrue(w.isPresent(), getClass().getSimpleName() + " has no AuthWire: its wire cannot be recorded or forged here");
        return w.get();
    }

    /** Runs each task on a thread of its own (the common pool may have one thread on a small machine, and these block). */
    public static final java.util.concurrent.Executor THREADS = r -> Thread.ofPlatform().daemon().name("tck-auth").start(r);

    private final Closer cleanup = new Closer();

    @AfterEach
    final void closeEverything() throws Exception {
        cleanup.closeAll();
    }

    private <T extends AutoCloseable> T closeLater(T c) {
        return cleanup.add(c);
    }

    /** @return {@code uri} with {@code options} added (name=value&...) */
    public static String with(String uri, String options) {
        return options.isEmpty() ? uri : uri + (uri.contains("?") ? "&" : "?") + options;
    }

    /** @return {@code uri} without the kit's authentication options */
    public static String withoutAuth(String uri) {
        int q = uri.indexOf('?');
        if (q < 0) {
            return uri;
        }
        StringBuilder sb = new StringBuilder(uri.substring(0, q));
        char sep = '?';
        for (String pair : uri.substring(q + 1).split("[&|]")) {
            String name = pair.substring(0, Math.max(0, pair.indexOf('=')));
            if (!io.pagewire.transport.spi.kit.Authentication.OPTIONS.containsKey(name)) {
                sb.append(sep).append(pair);
                sep = '&';
            }
        }
        return sb.toString();
    }

    private static String psk(Path p) {
        return "psk-file=" + p;
    }

    private static String creds(Path dir) {
        return "tls-creds=" + dir;
    }

    private TransportContext context(TckRam ram) {
        return new TransportContext().layout(ram.layout()).connectTimeoutNs(TimeUnit.SECONDS.toNanos(10));
    }


    private Listener listen(TckRam dst, String options) {
        return closeLater(Transports.listen(with(listenUri(), options), context(dst)));
    }

    private String target(Listener l, String options) {
        return with(withoutAuth(connectUri(l)), options);
    }

    /** Connects with {@code options} and expects a refusal; returns its message. */
    private String refused(Listener l, TckRam src, String options) {
        TransportException e = assertThrows(TransportException.class,
                () -> closeLater(Transports.connect(target(l, options), context(src).handler(new AckingHandler(false)))));
        assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
        return e.getMessage();
    }

    /** A whole small migration through {@code l}: pages arrive byte-exact, both sides see the completion. */
    private void migrate(Listener l, TckRam src, TckRam dst, String options) throws Exception {
        migrate(l, target(l, options), src, dst);
    }

    /** The handlers of a migration that completed. */
    private record Migration(AckingHandler source, AckingHandler destination) {
        void assertUndisturbed() {
            assertNull(destination.error.get(), () -> "destination: " + destination.error.get());
            assertNull(source.error.get(), () -> "source: " + source.error.get());
        }
    }

    /** A migration from a source connecting to {@code uri} (options included). */
    private Migration migrate(Listener l, String uri, TckRam src, TckRam dst) throws Exception {
        AckingHandler s = new AckingHandler(false);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri, context(src).handler(s)), THREADS);
        AckingHandler d = new AckingHandler(true);
        Connection dc = closeLater(l.accept(d, Duration.ofSeconds(30)));
        d.self = dc;
        Connection sc = closeLater(source.get(30, TimeUnit.SECONDS));
        return completeMigration(sc, s, d, src, dst);
    }

    /** Sends the source's pages and COMPLETE on {@code sc}; checks both sides and the destination's RAM. */
    private static Migration completeMigration(Connection sc, AckingHandler s, AckingHandler d, TckRam src, TckRam dst) throws Exception {
        src.fillPattern(3, 10, 1);
        sc.background().sendPages(0, 0, src.pages(0));
        sc.background().sendRoundEnd(1);
        sc.background().sendComplete();
        assertTrue(d.completed.await(30, TimeUnit.SECONDS), "destination onComplete");
        assertTrue(s.completed.await(30, TimeUnit.SECONDS), "source onComplete (acknowledgement)");
        Migration m = new Migration(s, d);
        m.assertUndisturbed();
        assertEquals(src.crc(0), dst.crc(0), "destination RAM differs from the source's");
        return m;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"psk", "certificates", "certificates+tls-authz"})
    void authenticatedMigrationMovesItsPages(String mode) throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        String listen = switch (mode) {
            case "psk" -> psk(c.psk);
            case "certificates" -> creds(c.certs);
            default -> creds(c.certs) + "&tls-authz=pagewire-source";
        };
        String connect = switch (mode) {
            case "psk" -> psk(c.psk);
            case "certificates" -> creds(c.certs);
            default -> creds(c.certs) + "&tls-authz=pagewire-destination";
        };
        migrate(listen(dst, listen), src, dst, connect);
    }

    @Test
    void wrongKeyIsRefusedAndTheListenerGoesOn() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, psk(c.psk));
        String why = refused(l, src, psk(c.otherPsk));
        assertTrue(why.contains("pre-shared key") || why.contains("authentication failed"), why);
        migrate(l, src, dst, psk(c.psk));
    }

    @Test
    void sourceWithoutCredentialsIsRefusedAndLearnsNothingOfTheLayout() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam other = closeLater(TckRam.of(new String[]{"secret.ram"}, new long[]{8 * MIB}));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, psk(c.psk));
        String why = refused(l, other, "");
        assertTrue(why.contains("authentication failed"), why);
        for (String leak : new String[]{"pc.ram", "secret.ram", String.valueOf(4 * MIB), String.valueOf(8 * MIB), "layout"}) {
            assertFalse(why.contains(leak), "an unauthenticated source was told '" + leak + "': " + why);
        }
        // The same source with the key learns of the mismatch, as an authenticated peer should.
        String mismatch = refused(l, other, psk(c.psk));
        assertTrue(mismatch.contains("layout"), mismatch);
    }

    @Test
    void missingCertificateIsRefused() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, creds(c.certs));
        assertTrue(refused(l, src, "").contains("authentication failed"));
        String why = refused(l, src, psk(c.psk)); // a key is not a certificate
        assertTrue(why.contains("certificates"), why);
        migrate(l, src, dst, creds(c.certs));
    }

    @Test
    void certificateOfAnotherCaIsRefused() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, creds(c.certs));
        // Its own CA does not know the destination either: the source refuses first.
        String why = refused(l, src, creds(c.otherCa));
        assertTrue(why.contains("failed to prove") || why.contains("authentication failed"), why);
        // With this CA for the destination but another CA's certificate for itself, the destination refuses.
        String mixed = "cert=" + c.otherCa.resolve("client-cert.pem") + "&key=" + c.otherCa.resolve("client-key.pem")
                + "&ca=" + c.certs.resolve("ca-cert.pem");
        assertTrue(refused(l, src, mixed).contains("authentication failed"));
    }

    @Test
    void unlistedIdentityIsRefused() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, creds(c.certs) + "&tls-authz=someone-else,pagewire-destination");
        assertTrue(refused(l, src, creds(c.certs)).contains("authentication failed"));
    }

    @Test
    void destinationThatCannotProveItselfIsRefusedByTheSource() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, creds(c.certs));
        String why = refused(l, src, creds(c.certs) + "&tls-authz=the-real-destination");
        assertTrue(why.contains("failed to prove"), why);
        Listener keyed = listen(dst, psk(c.otherPsk));
        why = refused(keyed, src, psk(c.psk));
        assertTrue(why.contains("failed to prove"), why);
    }
    private static final Duration WIRE_BOUND = Duration.ofSeconds(20);

    /**
     * A real source's handshake, recorded as its bytes went on this transport (HELLO, AUTH 1, AUTH 3 and its
     * JOINs) and played back as a new source once its migration is done: the destination answers with a fresh
     * AUTH 2 (new nonce and key), so the recorded proof fails; nothing is admitted, the recorded session is not
     * disturbed, and the next real source is the one {@code accept} returns.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"psk", "certificates"})
    void replayedHandshakeIsRefusedAndNothingIsAccepted(String mode) throws Exception {
        AuthWire wire = requireWire();
        TckCredentials c = TckCredentials.get();
        String options = mode.equals("psk") ? psk(c.psk) : creds(c.certs);
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, options);
        AuthWire.Recorder recorder = closeLater(wire.record(l));
        AckingHandler s = new AckingHandler(false);
        String uri = with(withoutAuth(recorder.uri()), options);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri, context(src).handler(s)), THREADS);
        AckingHandler d = new AckingHandler(true);
        Connection dc = closeLater(l.accept(d, Duration.ofSeconds(30)));
        d.self = dc;
        Connection sc = closeLater(source.get(30, TimeUnit.SECONDS));
        // played back while the recorded session runs: it must not be disturbed (its JOINs, MAC and all, are replayed too)
        AuthWire.Answer a = recorder.replay(WIRE_BOUND);
        assertFalse(a.admitted(), "a replayed handshake was admitted: " + a);
        assertTrue(a.frameTypes().contains(io.pagewire.transport.spi.wire.FrameType.AUTH),
                "the destination answers the replayed AUTH 1 with a fresh AUTH 2 (the replay reaches the proof): " + a);
        assertNotNull(a.error(), "the replay must be refused with an ERROR: " + a);
        assertTrue(a.error().contains(io.pagewire.transport.spi.kit.AuthExchange.REFUSED), a.toString());
        completeMigration(sc, s, d, src, dst);
        migrate(l, src, dst, options);
    }

    /** A session of another authenticated source (same key, its own session key): its proofs are valid, for it. */
    private static io.pagewire.transport.spi.kit.AuthExchange.Result anotherSession(TckCredentials c, TckRam ram) throws Exception {
        var auth = io.pagewire.transport.spi.kit.Authentication.psk(c.psk);
        var hello = new io.pagewire.transport.spi.wire.Hello(0x0123_4567_89abL, io.pagewire.transport.spi.wire.Hello.FLAG_AUTHENTICATED, 2,
                1 << 20, 100, 5000, ram.layout().descriptors());
        var toDst = new java.util.concurrent.LinkedBlockingQueue<byte[]>();
        var toSrc = new java.util.concurrent.LinkedBlockingQueue<byte[]>();
        CompletableFuture<io.pagewire.transport.spi.kit.AuthExchange.Result> d = CompletableFuture.supplyAsync(() -> {
            try {
                return io.pagewire.transport.spi.kit.AuthExchange.destination(auth, hello, queues(toSrc, toDst), "another source");
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }, THREADS);
        var s = io.pagewire.transport.spi.kit.AuthExchange.source(auth, hello, queues(toDst, toSrc), "another destination");
        assertTrue(java.util.Arrays.equals(s.sessionKey(), d.get(10, TimeUnit.SECONDS).sessionKey()));
        return s;
    }

    private static io.pagewire.transport.spi.kit.AuthExchange.Channel queues(java.util.concurrent.BlockingQueue<byte[]> out,
                                                                            java.util.concurrent.BlockingQueue<byte[]> in) {
        return new io.pagewire.transport.spi.kit.AuthExchange.Channel() {
            @Override
            public void send(byte[] message) {
                out.add(message);
            }

            @Override
            public byte[] receive(int maxBytes) throws java.io.IOException {
                try {
                    byte[] m = in.poll(10, TimeUnit.SECONDS);
                    if (m == null) {
                        throw new java.io.EOFException("no AUTH message within 10 s");
                    }
                    return m;
                } catch (InterruptedException e) {
                    throw new java.io.InterruptedIOException();
                }
            }
        };
    }

    /**
     * While an authenticated session waits for its background JOINs, a stranger presents one for it on this
     * transport's wire carrying the proof of another authenticated session, then one with no proof: each is
     * refused; the session's own JOINs then arrive and its migration completes undisturbed.
     */
    @Test
    void joinIntoAnotherSessionIsRefusedAndTheSessionGoesOn() throws Exception {
        AuthWire wire = requireWire();
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        Listener l = listen(dst, psk(c.psk));
        var other = anotherSession(c, src);
        AckingHandler d = new AckingHandler(true);
        CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> l.accept(d, Duration.ofSeconds(30)), THREADS);
        AckingHandler s = new AckingHandler(false);
        AuthWire.Held held = closeLater(wire.hold(l, psk(c.psk), context(src).handler(s)));
        for (AuthWire.JoinProof proof : new AuthWire.JoinProof[]{other::joinMac, null}) {
            AuthWire.Answer a = held.forgeJoin(proof, WIRE_BOUND);
            assertFalse(a.admitted(), "a forged JOIN was admitted: " + a);
            assertNotNull(a.error(), "a forged JOIN must be refused: " + a);
            assertTrue(a.error().contains(io.pagewire.transport.spi.kit.AuthExchange.REFUSED), a.toString());
        }
        Connection sc = held.release(WIRE_BOUND);
        Connection dc = closeLater(accepted.get(30, TimeUnit.SECONDS));
        d.self = dc;
        if (sc != null) {
            completeMigration(closeLater(sc), s, d, src, dst);
        } else {
            assertFalse(dc.isClosed(), "the held session's destination connection");
            assertNull(d.error.get(), () -> "destination: " + d.error.get());
        }
    }
}
