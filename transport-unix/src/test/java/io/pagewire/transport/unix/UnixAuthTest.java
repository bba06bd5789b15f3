package io.pagewire.transport.unix;

import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;
import io.pagewire.transport.spi.tck.StreamAuthWire;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;

/** The TCK's authentication cases over unix domain sockets, with two background channels. */
class UnixAuthTest extends AuthTck {
    private static final Path DIR;
    private final AtomicInteger next = new AtomicInteger();

    static {
        try {
            DIR = Files.createTempDirectory("pagewire-unix-auth");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    protected String listenUri() {
        return "unix://" + DIR.resolve("auth-" + next.incrementAndGet() + ".sock") + "?channels=2";
    }

    @Override
    protected Optional<AuthWire> authWire() {
        return Optional.of(new StreamAuthWire(new StreamAuthWire.Addressing() {
            @Override
            public SocketAddress target(Listener l) {
                return UnixDomainSocketAddress.of(TransportUri.parse(l.uri()).requirePath());
            }

            @Override
            public ServerSocketChannel bindRelay() throws IOException {
                return ServerSocketChannel.open(StandardProtocolFamily.UNIX)
                        .bind(UnixDomainSocketAddress.of(DIR.resolve("relay-" + next.incrementAndGet() + ".sock")));
            }

            @Override
            public String relayUri(Listener l, SocketAddress relay) {
                String uri = l.uri();
                int q = uri.indexOf('?');
                return "unix://" + ((UnixDomainSocketAddress) relay).getPath() + (q < 0 ? "" : uri.substring(q));
            }
        }));
    }
}
