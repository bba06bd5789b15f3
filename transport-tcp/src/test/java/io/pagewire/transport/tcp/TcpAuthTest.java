package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.tck.AuthTck;

/** The TCK's authentication cases over TCP, with two background channels. */
class TcpAuthTest extends AuthTck {
    @Override
    protected String listenUri() {
        return "tcp://127.0.0.1:0?channels=2";
    }
}
