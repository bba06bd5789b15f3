package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.MessageHandler;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What strangers can make an authenticating listener spend: connections that never say a word hold a
 * handshake slot each, at most {@code 2 x 64 + 8} of them and each for at most the handshake deadline; the
 * next stranger takes the oldest one's slot (evicted), and once the silent ones are gone a real source gets in.
 */
class HandshakeBoundsTest {
    private static final int SLOTS = 2 * 64 + 8; // StreamListener.MAX_HANDSHAKES

    @Test
    void silentStrangersHoldAtMostTheHandshakeSlotsAndARealSourceGetsInAfterThem() throws Exception {
        TckCredentials c = TckCredentials.get();
        String auth = "?channels=1&psk-file=" + c.psk;
        List<Socket> silent = new ArrayList<>();
        try (TckRam src = TckRam.of(1 << 20); TckRam dst = TckRam.of(1 << 20);
             Listener l = Transports.listen("tcp://127.0.0.1:0" + auth, new TransportContext().layout(dst.layout())
                     .connectTimeoutNs(TimeUnit.SECONDS.toNanos(30)))) {
            URI u = URI.create(l.uri().replace("tcp://", "http://"));
            InetSocketAddress at = new InetSocketAddress(u.getHost(), u.getPort());
            try {
                for (int i = 0; i < SLOTS; i++) {
                    Socket s = new Socket();
                    s.connect(at, 5000);
                    silent.add(s);
                }
                String answer;
                String evicted;
                // Every slot is held. The next stranger takes the slot of the oldest one, which is let go (issue 18's
                // eviction: silent strangers cannot lock a real source out); the newcomer is held to the handshake deadline.
                try (Socket one = new Socket()) {
                    one.connect(at, 5000);
                    silent.getFirst().setSoTimeout(15_000);
                    evicted = readAll(silent.getFirst().getInputStream());
                    one.setSoTimeout(15_000);
                    answer = readAll(one.getInputStream());
                }
                assertTrue(!evicted.startsWith("(nothing"), "the oldest silent stranger was let go when every slot was held: " + evicted);
                assertTrue(answer.contains("did not complete in time"), "the newcomer holds its slot only until the handshake deadline: " + answer);
            } finally {
                for (Socket s : silent) {
                    s.close();
                }
            }
            // The silent ones are gone; their slots come free as each handshake thread sees the close (asynchronously:
            // a source arriving before that is told to try again, which it does here).
            String target = l.uri();
            CompletableFuture<Connection> accepted = CompletableFuture.supplyAsync(() -> l.accept(new MessageHandler() {
            }, Duration.ofSeconds(30)));
            Connection s = null;
            for (int attempt = 0; s == null; attempt++) {
                try {
                    s = Transports.connect(target, new TransportContext().layout(src.layout()).handler(new MessageHandler() {
                    }));
                } catch (TransportException e) {
                    if (!e.getMessage().contains("handshakes in progress") || attempt > 1000) {
                        throw e;
                    }
                }
            }
            try (Connection d = accepted.get(30, TimeUnit.SECONDS); Connection sc = s) {
                assertTrue(!d.isClosed() && !sc.isClosed());
            }
        }
    }

    private static String readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] b = new byte[4096];
        try {
            for (int n; (n = in.read(b)) > 0; ) {
                out.write(b, 0, n);
            }
        } catch (SocketTimeoutException e) {
            return "(nothing within 15 s) " + out.toString(StandardCharsets.ISO_8859_1);
        }
        return out.toString(StandardCharsets.ISO_8859_1);
    }
}
