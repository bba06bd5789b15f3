package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;
import io.pagewire.transport.spi.tck.StreamAuthWire;

import java.net.InetSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.util.Optional;

/** The TCK's authentication cases over TCP, with two background channels. */
class TcpAuthTest extends AuthTck {
    @Override
    protected String listenUri() {
        return "tcp://127.0.0.1:0?channels=2";
    }

    @Override
    protected Optional<AuthWire> authWire() {
        return Optional.of(new StreamAuthWire(new StreamAuthWire.Addressing() {
            @Override
            public InetSocketAddress target(io.pagewire.transport.spi.Listener l) {
                TransportUri u = TransportUri.parse(l.uri());
                return new InetSocketAddress(u.host(), u.port());
            }

            @Override
            public ServerSocketChannel bindRelay() throws java.io.IOException {
                return ServerSocketChannel.open().bind(new InetSocketAddress("127.0.0.1", 0));
            }

            @Override
            public String relayUri(io.pagewire.transport.spi.Listener l, java.net.SocketAddress relay) {
                String uri = l.uri();
                int q = uri.indexOf('?');
                return "tcp://127.0.0.1:" + ((InetSocketAddress) relay).getPort() + (q < 0 ? "" : uri.substring(q));
            }
        }));
    }
}
