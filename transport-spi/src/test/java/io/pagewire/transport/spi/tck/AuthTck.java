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
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The authentication part of the TCK: every transport runs it through a small subclass naming one
 * listen URI; the kit's handshake ({@code AuthExchange}) must behave the same on each. A migration
 * with a pre-shared key and with certificates moves its pages; the wrong key, a missing
 * certificate, a certificate of another CA, an identity not in {@code tls-authz}, and a destination
 * that cannot prove itself are each refused, the refused source learns nothing of the layout, and
 * the listener goes on serving. (Replayed handshakes and JOINs into another session are refused by
 * the kit's exchange and JOIN MAC, the same code on every transport: {@code AuthExchangeTest}.)
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
        src.fillPattern(3, 10, 1);
        AckingHandler s = new AckingHandler(false);
        AckingHandler d = new AckingHandler(true);
        String uri = target(l, options);
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri, context(src).handler(s)));
        Connection dc = closeLater(l.accept(d, Duration.ofSeconds(30)));
        d.self = dc;
        Connection sc = closeLater(source.get(30, TimeUnit.SECONDS));
        sc.background().sendPages(0, 0, src.pages(0));
        sc.background().sendRoundEnd(1);
        sc.background().sendComplete();
        assertTrue(d.completed.await(30, TimeUnit.SECONDS), "destination onComplete");
        assertTrue(s.completed.await(30, TimeUnit.SECONDS), "source onComplete (acknowledgement)");
        assertNull(d.error.get(), () -> "destination: " + d.error.get());
        assertNull(s.error.get(), () -> "source: " + s.error.get());
        assertEquals(src.crc(0), dst.crc(0), "destination RAM differs from the source's");
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
}
