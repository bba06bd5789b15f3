package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.wire.Hello;
import org.junit.jupiter.api.Test;

import java.io.EOFException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The kit's authentication exchange between two threads over in-memory channels: what every
 * transport runs. Replayed handshakes, a tampered HELLO, JOINs into another session and malformed
 * messages are refused; the two sides agree on the session key.
 */
class AuthExchangeTest {
    private static final Hello HELLO = new Hello(0x1234_5678_9abcL, Hello.FLAG_AUTHENTICATED, 2, 1 << 20, 100, 5000,
            List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096)));

    /** One direction of an in-memory link; records what went through. */
    private static final class Pipe {
        final BlockingQueue<byte[]> q = new ArrayBlockingQueue<>(8);
        final List<byte[]> seen = new ArrayList<>();
    }

    private static AuthExchange.Channel channel(Pipe out, Pipe in) {
        return new AuthExchange.Channel() {
            @Override
            public void send(byte[] m) {
                synchronized (out.seen) {
                    out.seen.add(m.clone());
                }
                out.q.add(m);
            }

            @Override
            public byte[] receive(int max) throws IOException {
                try {
                    byte[] m = in.q.poll(10, TimeUnit.SECONDS);
                    if (m == null) {
                        throw new EOFException("nothing within 10 s");
                    }
                    assertTrue(m.length <= max);
                    return m;
                } catch (InterruptedException e) {
                    throw new IOException(e);
                }
            }
        };
    }

    /** A channel that plays back recorded source messages and swallows what the destination sends. */
    private static AuthExchange.Channel replay(List<byte[]> messages) {
        List<byte[]> left = new ArrayList<>(messages);
        return new AuthExchange.Channel() {
            @Override
            public void send(byte[] m) {
            }

            @Override
            public byte[] receive(int max) throws IOException {
                if (left.isEmpty()) {
                    throw new EOFException("no more recorded messages");
                }
                return left.removeFirst();
            }
        };
    }

    private record Run(AuthExchange.Result source, AuthExchange.Result destination, List<byte[]> sourceMessages) {
    }

    private static Run run(Authentication src, Hello srcHello, Authentication dst, Hello dstHello) throws Exception {
        Pipe toDst = new Pipe();
        Pipe toSrc = new Pipe();
        CompletableFuture<AuthExchange.Result> d = CompletableFuture.supplyAsync(() -> {
            try {
                return AuthExchange.destination(dst, dstHello, channel(toSrc, toDst), "test source");
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        AuthExchange.Result s;
        try {
            s = AuthExchange.source(src, srcHello, channel(toDst, toSrc), "test destination");
        } catch (TransportException e) {
            toDst.q.add(new byte[0]); // unblock the destination: a malformed message
            throw e;
        }
        return new Run(s, d.get(10, TimeUnit.SECONDS), toDst.seen);
    }

    private static Throwable cause(Throwable t) {
        while (t.getCause() != null && !(t instanceof TransportException)) {
            t = t.getCause();
        }
        return t;
    }

    @Test
    void bothSidesAgreeOnTheSessionKeyAndJoinMacsBindSessionAndStream() throws Exception {
        Authentication psk = Authentication.psk(TckCredentials.get().psk);
        Run a = run(psk, HELLO, psk, HELLO);
        assertArrayEquals(a.source.sessionKey(), a.destination.sessionKey());
        Run b = run(psk, HELLO, psk, HELLO);
        assertFalse(Arrays.equals(a.source.sessionKey(), b.source.sessionKey()), "two sessions with one key must not share a session key");
        long id = HELLO.sessionId();
        assertTrue(a.destination.checkJoin(id, 1, 2, a.source.joinMac(id, 1, 2)));
        // A JOIN made with another session's key: refused (a channel cannot be hijacked into this session).
        assertFalse(a.destination.checkJoin(id, 1, 2, b.source.joinMac(id, 1, 2)));
        // Another stream, another stream count, another session id, no MAC at all: refused.
        assertFalse(a.destination.checkJoin(id, 0, 2, a.source.joinMac(id, 1, 2)));
        assertFalse(a.destination.checkJoin(id, 1, 3, a.source.joinMac(id, 1, 2)));
        assertFalse(a.destination.checkJoin(id + 1, 1, 2, a.source.joinMac(id, 1, 2)));
        assertFalse(a.destination.checkJoin(id, 1, 2, null));
    }

    @Test
    void replayedHandshakeIsRefused() throws Exception {
        TckCredentials c = TckCredentials.get();
        for (Authentication[] sides : new Authentication[][]{
                {Authentication.psk(c.psk), Authentication.psk(c.psk)},
                {certs(c, "client", Set.of()), certs(c, "server", Set.of())}}) {
            Run recorded = run(sides[0], HELLO, sides[1], HELLO);
            assertEquals(2, recorded.sourceMessages.size());
            // Everything the real source sent, played back to a fresh destination: its nonce and key are new.
            AuthExchange.Refusal r = assertThrows(AuthExchange.Refusal.class,
                    () -> AuthExchange.destination(sides[1], HELLO, replay(recorded.sourceMessages), "replayer"));
            assertEquals(AuthExchange.REFUSED, r.getMessage());
            assertTrue(r.detail().contains("failed to prove"), r.detail());
        }
    }

    @Test
    void aHelloChangedOnTheWayIsRefused() throws Exception {
        Authentication psk = Authentication.psk(TckCredentials.get().psk);
        Hello other = new Hello(HELLO.sessionId() + 1, HELLO.flags(), HELLO.channels(), HELLO.maxPagePayload(), HELLO.heartbeatMs(),
                HELLO.peerTimeoutMs(), HELLO.regions());
        // The source sees the destination's proof over another HELLO: it refuses first.
        TransportException e = assertThrows(TransportException.class, () -> run(psk, HELLO, psk, other));
        assertTrue(cause(e).getMessage().contains("failed to prove"), e.getMessage());
    }

    @Test
    void wrongKeyAndMalformedMessagesAreRefusedTersely() throws Exception {
        TckCredentials c = TckCredentials.get();
        TransportException e = assertThrows(TransportException.class,
                () -> run(Authentication.psk(c.otherPsk), HELLO, Authentication.psk(c.psk), HELLO));
        assertTrue(cause(e).getMessage().contains("failed to prove it holds the pre-shared key"), e.getMessage());
        for (byte[] bad : new byte[][]{{}, {1}, {1, 1, 0, 0}, {1, 1, 0, 0, 0, 32}, {9, 9, 9, 9}}) {
            AuthExchange.Refusal r = assertThrows(AuthExchange.Refusal.class,
                    () -> AuthExchange.destination(Authentication.psk(c.psk), HELLO, replay(List.of(bad)), "fuzzer"));
            assertTrue(r.getMessage().startsWith(AuthExchange.REFUSED), r.getMessage());
        }
    }

    @Test
    void credentialFilesAreCheckedWhenLoaded() throws Exception {
        TckCredentials c = TckCredentials.get();
        java.nio.file.Path shortKey = java.nio.file.Files.createTempFile("short", ".psk");
        java.nio.file.Files.write(shortKey, new byte[5]);
        TransportException e = assertThrows(TransportException.class, () -> Authentication.psk(shortKey));
        assertTrue(e.getMessage().contains("5 bytes") && e.getMessage().contains("16"), e.getMessage());
        // A key that belongs to another certificate.
        e = assertThrows(TransportException.class, () -> Authentication.certificates(c.certs.resolve("client-cert.pem"),
                c.certs.resolve("server-key.pem"), c.certs.resolve("ca-cert.pem"), Set.of()));
        assertTrue(e.getMessage().contains("does not belong"), e.getMessage());
        e = assertThrows(TransportException.class, () -> Authentication.certificates(c.certs.resolve("client-key.pem"),
                c.certs.resolve("client-key.pem"), c.certs.resolve("ca-cert.pem"), Set.of()));
        assertTrue(e.getMessage().contains("client-key.pem"), e.getMessage());
        java.nio.file.Files.delete(shortKey);
    }

    private static Authentication certs(TckCredentials c, String who, Set<String> authz) {
        return Authentication.certificates(c.certs.resolve(who + "-cert.pem"), c.certs.resolve(who + "-key.pem"),
                c.certs.resolve("ca-cert.pem"), authz);
    }
}
