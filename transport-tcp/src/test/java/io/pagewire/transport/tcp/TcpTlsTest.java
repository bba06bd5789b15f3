package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.AckingHandler;
import io.pagewire.transport.spi.tck.Closer;
import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code tls=on}: the bytes on the wire are not the pages (captured by a relay between source and
 * destination, with a control run in clear that finds them), a peer whose certificate is of another
 * CA is refused on either side, a source in clear is told the destination wants TLS, and the
 * combinations that cannot work are refused with a message naming them.
 */
class TcpTlsTest {
    private static final long MIB = 1 << 20;
    /** Written over the source's pages: found in the captured stream only when it is in clear. */
    private static final byte[] MARKER = "pagewire-plaintext-marker-0123456789".getBytes(StandardCharsets.US_ASCII);

    private final Closer cleanup = new Closer();

    @AfterEach
    void closeEverything() throws Exception {
        cleanup.closeAll();
    }

    private <T extends AutoCloseable> T closeLater(T c) {
        return cleanup.add(c);
    }

    private static String creds(java.nio.file.Path dir) {
        return "tls-creds=" + dir;
    }

    private static TransportContext context(TckRam ram) {
        return new TransportContext().layout(ram.layout()).connectTimeoutNs(TimeUnit.SECONDS.toNanos(10));
    }


    /** A whole small migration to {@code uri} through {@code l}: pages arrive byte-exact, both sides see the completion. */
    private void migrate(Listener l, String uri, TckRam src, TckRam dst) throws Exception {
        AckingHandler s = new AckingHandler(false);
        AckingHandler d = new AckingHandler(true);
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

    /** Fills region 0 with the marker, over and over. */
    private static void fillWithMarker(TckRam ram) {
        MemorySegment m = ram.memory(0);
        for (long at = 0; at + MARKER.length <= m.byteSize(); at += MARKER.length) {
            MemorySegment.copy(MARKER, 0, m, ValueLayout.JAVA_BYTE, at, MARKER.length);
        }
    }

    @ParameterizedTest(name = "tls={0}")
    @ValueSource(strings = {"on", "off"})
    void pagesOnTheWireAreNotThePlaintextWithTls(String tls) throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        fillWithMarker(src);
        String options = "channels=2&data-digest=false&tls=" + tls + "&" + creds(c.certs);
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?" + options, context(dst)));
        Relay relay = closeLater(new Relay(URI.create(l.uri().replace("tcp://", "http://")).getPort()));
        migrate(l, "tcp://127.0.0.1:" + relay.port() + "?" + options, src, dst);
        byte[] wire = relay.captured();
        assertTrue(wire.length > 4 * MIB, "the relay saw " + wire.length + " bytes; the pages alone are " + 4 * MIB);
        int found = count(wire, MARKER);
        if (tls.equals("on")) {
            assertEquals(0, found, "the page content crossed the wire in clear " + found + " times with tls=on");
        } else {
            // The control: the same capture finds the pages when they go in clear, so the check above can fail.
            assertTrue(found > 1000, "without TLS the relay should see the marker in the pages; found " + found);
        }
    }

    /** Two loopback sockets with TLS between them (the kit's layer, certificates of the test CA): [client, server]. */
    private io.pagewire.linux.NativeSocket[] tlsPair() throws Exception {
        TckCredentials c = TckCredentials.get();
        javax.net.ssl.SSLContext server = io.pagewire.transport.spi.kit.Authentication.certificates(c.certs.resolve("server-cert.pem"),
                c.certs.resolve("server-key.pem"), c.certs.resolve("ca-cert.pem"), java.util.Set.of()).tlsContext("test server");
        javax.net.ssl.SSLContext client = io.pagewire.transport.spi.kit.Authentication.certificates(c.certs.resolve("client-cert.pem"),
                c.certs.resolve("client-key.pem"), c.certs.resolve("ca-cert.pem"), java.util.Set.of()).tlsContext("test client");
        io.pagewire.linux.NativeSocket listening = closeLater(io.pagewire.linux.NativeSocket.listen(new InetSocketAddress("127.0.0.1", 0), 1));
        io.pagewire.linux.NativeSocket out = closeLater(io.pagewire.linux.NativeSocket.connect(listening.localAddress(), 10_000));
        io.pagewire.linux.NativeSocket in = closeLater(listening.accept(10_000));
        CompletableFuture<Void> serverSide = CompletableFuture.runAsync(() -> {
            try {
                io.pagewire.transport.spi.kit.stream.TlsLayer.server(in, server, "test client", System.nanoTime() + TimeUnit.SECONDS.toNanos(10));
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }, r -> Thread.ofPlatform().daemon().start(r));
        io.pagewire.transport.spi.kit.stream.TlsLayer.client(out, client, "test server", 10_000);
        serverSide.get(10, TimeUnit.SECONDS);
        in.receiveTimeoutMs(10_000);
        return new io.pagewire.linux.NativeSocket[]{out, in};
    }

    private static void send(io.pagewire.linux.NativeSocket s, byte[] b) throws IOException {
        s.sendFully(java.lang.foreign.Arena.ofAuto().allocateFrom(ValueLayout.JAVA_BYTE, b), 0, b.length);
    }

    /**
     * An orderly end sends close_notify, and the reader sees the end of the stream; a TLS stream whose socket
     * ends without it (cut on the way, or a peer that died) is a truncation, not an end.
     */
    @Test
    void closeNotifyEndsATlsStreamAndAStreamCutWithoutItIsATruncation() throws Exception {
        java.lang.foreign.Arena arena = closeLater(java.lang.foreign.Arena.ofShared());
        MemorySegment buf = arena.allocate(64);
        byte[] hello = "hello".getBytes(StandardCharsets.US_ASCII);

        io.pagewire.linux.NativeSocket[] orderly = tlsPair();
        send(orderly[0], hello);
        orderly[0].closeLayerOutbound();
        orderly[0].shutdown();
        assertEquals(hello.length, orderly[1].recvFully(buf, 0, hello.length));
        assertEquals(-1, orderly[1].recvFully(buf, 0, 1), "close_notify, then the socket's end: the end of the stream");

        io.pagewire.linux.NativeSocket[] cut = tlsPair();
        send(cut[0], hello);
        cut[0].shutdown(); // the socket ends without close_notify
        assertEquals(hello.length, cut[1].recvFully(buf, 0, hello.length));
        IOException e = assertThrows(io.pagewire.transport.spi.kit.stream.TlsLayer.TruncatedException.class, () -> cut[1].recvFully(buf, 0, 1));
        assertTrue(e.getMessage().contains("without close_notify"), e.getMessage());
    }

    /**
     * A migration whose TLS connections are cut on the way before it completed fails naming the truncation;
     * one that completed ends in order on both sides (each sends close_notify as it closes).
     */
    @Test
    void aTlsMigrationCutBeforeItCompletedFailsNamingTheTruncation() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(4 * MIB));
        TckRam dst = closeLater(TckRam.of(4 * MIB));
        String options = "tls=on&" + creds(c.certs);
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?" + options, context(dst)));
        Relay relay = closeLater(new Relay(URI.create(l.uri().replace("tcp://", "http://")).getPort()));
        AckingHandler s = new AckingHandler(false);
        AckingHandler d = new AckingHandler(true);
        String uri = "tcp://127.0.0.1:" + relay.port() + "?" + options;
        CompletableFuture<Connection> source = CompletableFuture.supplyAsync(() -> Transports.connect(uri, context(src).handler(s)),
                r -> Thread.ofPlatform().daemon().start(r));
        Connection dc = closeLater(l.accept(d, Duration.ofSeconds(30)));
        d.self = dc;
        closeLater(source.get(30, TimeUnit.SECONDS));
        relay.close(); // every connection cut between the two (FIN from the relay, no close_notify)
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (d.error.get() == null) {
            assertTrue(System.nanoTime() < deadline, "the destination did not notice the cut within 30 s");
            java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5)); // polling the handler with a deadline
        }
        String why = d.error.get().getMessage();
        assertTrue(why.contains("without close_notify"), why);
        assertTrue(d.completed.getCount() == 1, "no completion after a cut");
        // and a migration that completes ends cleanly on both sides
        migrate(l, "tcp://127.0.0.1:" + URI.create(l.uri().replace("tcp://", "http://")).getPort() + "?" + options, src, dst);
    }

    @Test
    void sourceWithACertificateOfAnotherCaIsRefusedAndTheListenerGoesOn() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(MIB));
        TckRam dst = closeLater(TckRam.of(MIB));
        src.fillPattern(5, 10, 1);
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?channels=2&tls=on&" + creds(c.certs), context(dst)));
        String stranger = l.uri().replace(creds(c.certs), creds(c.otherCa));
        TransportException e = assertThrows(TransportException.class,
                () -> closeLater(Transports.connect(stranger, context(src).handler(new AckingHandler(false)))));
        assertTrue(e.getMessage().contains("TLS") || e.getMessage().contains("certificate"), e.toString());
        migrate(l, l.uri(), src, dst);
    }

    @Test
    void destinationWithACertificateOfAnotherCaIsRefusedBeforeAnyHello() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(MIB));
        TckRam dst = closeLater(TckRam.of(MIB));
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?channels=1&tls=on&" + creds(c.otherCa), context(dst)));
        String uri = l.uri().replace(creds(c.otherCa), creds(c.certs));
        TransportException e = assertThrows(TransportException.class,
                () -> closeLater(Transports.connect(uri, context(src).handler(new AckingHandler(false)))));
        assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
        assertTrue(e.getMessage().contains("TLS handshake with the destination") && e.getMessage().contains("certif"), e.getMessage());
    }

    @Test
    void sourceInClearIsToldTheDestinationWantsTls() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(MIB));
        TckRam dst = closeLater(TckRam.of(MIB));
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?channels=1&tls=on&" + creds(c.certs), context(dst)));
        String clear = l.uri().replace("tls=on&", "");
        TransportException e = assertThrows(TransportException.class,
                () -> closeLater(Transports.connect(clear, context(src).handler(new AckingHandler(false)))));
        assertEquals(Kind.HANDSHAKE, e.kind(), e.toString());
        assertTrue(e.getMessage().contains("tls=on"), e.getMessage());
    }

    @Test
    void tlsSourceToADestinationInClearFailsNamingTls() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = closeLater(TckRam.of(MIB));
        TckRam dst = closeLater(TckRam.of(MIB));
        Listener l = closeLater(Transports.listen("tcp://127.0.0.1:0?channels=1&" + creds(c.certs), context(dst)));
        String tls = l.uri() + "&tls=on";
        TransportException e = assertThrows(TransportException.class,
                () -> closeLater(Transports.connect(tls, context(src).handler(new AckingHandler(false)))));
        assertTrue(e.getMessage().contains("TLS handshake") && e.getMessage().contains("tls=on"), e.getMessage());
    }

    @Test
    void combinationsThatCannotWorkAreRefusedNamingThem() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam dst = closeLater(TckRam.of(MIB));
        TransportException psk = assertThrows(TransportException.class,
                () -> closeLater(Transports.listen("tcp://127.0.0.1:0?tls=on&psk-file=" + c.psk, context(dst))));
        assertEquals(Kind.INVALID_URI, psk.kind(), psk.toString());
        assertTrue(psk.getMessage().contains("tls=on needs certificates") && psk.getMessage().contains("pre-shared key"), psk.getMessage());
        TransportException none = assertThrows(TransportException.class,
                () -> closeLater(Transports.connect("tcp://127.0.0.1:9?tls=on", context(dst))));
        assertEquals(Kind.INVALID_URI, none.kind(), none.toString());
        assertTrue(none.getMessage().contains("tls=on needs certificates") && none.getMessage().contains("tls-creds"), none.getMessage());
        TransportException bad = assertThrows(TransportException.class,
                () -> closeLater(Transports.listen("tcp://127.0.0.1:0?tls=yes&" + creds(c.certs), context(dst))));
        assertEquals(Kind.INVALID_URI, bad.kind(), bad.toString());
        assertTrue(bad.getMessage().contains("tls") && bad.getMessage().contains("yes") && bad.getMessage().contains("on"), bad.getMessage());
    }

    /** @return how often {@code needle} occurs in {@code hay} */
    private static int count(byte[] hay, byte[] needle) {
        int n = 0;
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            n++;
            i += needle.length - 1;
        }
        return n;
    }

    /**
     * A TCP relay on loopback between a source and a destination, as an on-path observer: forwards
     * every connection both ways and keeps a copy of what the source sent (bounded).
     */
    private static final class Relay implements AutoCloseable {
        private static final int MAX_CAPTURE = 64 << 20;
        private final ServerSocket server;
        private final int target;
        private final ByteArrayOutputStream captured = new ByteArrayOutputStream();
        private final List<Socket> sockets = new ArrayList<>();
        private final List<Thread> threads = new ArrayList<>();

        Relay(int target) throws IOException {
            this.target = target;
            this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
            start("relay-accept", this::acceptLoop);
        }

        int port() {
            return server.getLocalPort();
        }

        synchronized byte[] captured() {
            return captured.toByteArray();
        }

        private synchronized void capture(byte[] b, int n) {
            if (captured.size() + n <= MAX_CAPTURE) {
                captured.write(b, 0, n);
            }
        }

        private synchronized void start(String name, ThrowingRunnable r) {
            Thread t = Thread.ofPlatform().daemon().name(name).start(() -> {
                try {
                    r.run();
                } catch (IOException e) {
                    // a side closed: the relay's connection ends with it (the migration's own checks report failures)
                }
            });
            threads.add(t);
        }

        private synchronized void keep(Socket s) {
            sockets.add(s);
        }

        private void acceptLoop() throws IOException {
            while (true) {
                Socket in = server.accept();
                Socket out = new Socket();
                out.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), target), 5000);
                in.setTcpNoDelay(true);
                out.setTcpNoDelay(true);
                keep(in);
                keep(out);
                start("relay-up", () -> pump(in, out, true));
                start("relay-down", () -> pump(out, in, false));
            }
        }

        private void pump(Socket from, Socket to, boolean record) throws IOException {
            byte[] buf = new byte[64 * 1024];
            InputStream i = from.getInputStream();
            OutputStream o = to.getOutputStream();
            int n;
            try {
                while ((n = i.read(buf)) > 0) {
                    if (record) {
                        capture(buf, n);
                    }
                    o.write(buf, 0, n);
                }
            } finally {
                to.shutdownOutput();
            }
        }

        @Override
        public void close() throws Exception {
            server.close();
            List<Socket> all;
            List<Thread> ts;
            synchronized (this) {
                all = new ArrayList<>(sockets);
                ts = new ArrayList<>(threads);
            }
            for (Socket s : all) {
                s.close();
            }
            for (Thread t : ts) {
                t.join(5000);
            }
        }

        @FunctionalInterface
        private interface ThrowingRunnable {
            void run() throws IOException;
        }
    }
}
