package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.tck.Mutations;
import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.wire.Hello;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.BeforeContainer;

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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzz target of the authentication exchange as a destination sees it from a stranger: AUTH messages
 * recorded from real exchanges (pre-shared key and certificates: the seed corpus), mutated, and noise.
 * Whatever arrives, the destination refuses with an {@link AuthExchange.Refusal} that tells the
 * stranger only {@link AuthExchange#REFUSED}: it never admits, never fails otherwise.
 */
class AuthFuzzTest {
    private static final Hello HELLO = new Hello(42, Hello.FLAG_AUTHENTICATED, 1, 1 << 20, 100, 5000,
            List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096)));
    private static Authentication psk;
    private static Authentication serverCerts;
    private static final List<List<byte[]>> RECORDED = new ArrayList<>();

    @BeforeContainer
    static void record() throws Exception {
        TckCredentials c = TckCredentials.get();
        psk = Authentication.psk(c.psk);
        Authentication client = Authentication.certificates(c.certs.resolve("client-cert.pem"), c.certs.resolve("client-key.pem"),
                c.certs.resolve("ca-cert.pem"), Set.of());
        serverCerts = Authentication.certificates(c.certs.resolve("server-cert.pem"), c.certs.resolve("server-key.pem"),
                c.certs.resolve("ca-cert.pem"), Set.of("pagewire-source"));
        RECORDED.add(exchange(psk, psk));
        RECORDED.add(exchange(client, serverCerts));
    }

    /** @return what a real source sent in a successful exchange */
    private static List<byte[]> exchange(Authentication source, Authentication destination) throws Exception {
        BlockingQueue<byte[]> toDst = new ArrayBlockingQueue<>(4);
        BlockingQueue<byte[]> toSrc = new ArrayBlockingQueue<>(4);
        List<byte[]> sent = new ArrayList<>();
        CompletableFuture<AuthExchange.Result> d = CompletableFuture.supplyAsync(() -> {
            try {
                return AuthExchange.destination(destination, HELLO, pipe(toSrc, toDst, null), "recorder");
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        AuthExchange.source(source, HELLO, pipe(toDst, toSrc, sent), "recorder");
        d.get(10, TimeUnit.SECONDS);
        return sent;
    }

    private static AuthExchange.Channel pipe(BlockingQueue<byte[]> out, BlockingQueue<byte[]> in, List<byte[]> record) {
        return new AuthExchange.Channel() {
            @Override
            public void send(byte[] m) {
                if (record != null) {
                    record.add(m.clone());
                }
                out.add(m);
            }

            @Override
            public byte[] receive(int max) throws IOException {
                try {
                    byte[] m = in.poll(10, TimeUnit.SECONDS);
                    if (m == null) {
                        throw new EOFException("nothing within 10 s");
                    }
                    return m;
                } catch (InterruptedException e) {
                    throw new IOException(e);
                }
            }
        };
    }

    @Provide
    Arbitrary<List<byte[]>> strangers() {
        Arbitrary<List<byte[]>> mutatedRecordings = Arbitraries.integers().between(0, RECORDED.size() - 1).flatMap(i -> {
            List<byte[]> r = RECORDED.get(i);
            return Arbitraries.integers().between(0, r.size() - 1).flatMap(which ->
                    Mutations.of(List.of(r.get(which))).map(m -> {
                        List<byte[]> out = new ArrayList<>(r);
                        out.set(which, m);
                        return out;
                    }));
        });
        Arbitrary<List<byte[]>> noise = Arbitraries.bytes().array(byte[].class).ofMaxSize(300).list().ofMinSize(1).ofMaxSize(3);
        return Arbitraries.oneOf(mutatedRecordings, noise, Arbitraries.of(RECORDED)); // a replay, unchanged, too
    }

    @Property
    void aStrangerIsRefusedWhateverItSends(@ForAll("strangers") List<byte[]> messages, @ForAll boolean certificates) {
        List<byte[]> left = new ArrayList<>(messages);
        AuthExchange.Channel replay = new AuthExchange.Channel() {
            @Override
            public void send(byte[] message) {
            }

            @Override
            public byte[] receive(int maxBytes) throws IOException {
                if (left.isEmpty()) {
                    throw new EOFException("the stranger has nothing more to say");
                }
                return left.removeFirst();
            }
        };
        try {
            AuthExchange.destination(certificates ? serverCerts : psk, HELLO, replay, "stranger");
            throw new AssertionError("a stranger was admitted with " + messages.size() + " messages: "
                    + messages.stream().map(Arrays::toString).toList());
        } catch (AuthExchange.Refusal r) {
            assertTrue(r.getMessage().startsWith(AuthExchange.REFUSED), r.getMessage());
        } catch (EOFException e) {
            // it stopped talking before the last step: the destination closes, nothing admitted
        } catch (TransportException | IOException e) {
            assertEquals(AuthExchange.Refusal.class, e.getClass(), "unexpected failure " + e);
        }
    }
}
