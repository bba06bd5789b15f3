package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.tck.AuthTck;

/** The TCK's authentication cases over Aeron UDP (loopback) with embedded media drivers. */
class AeronAuthTest extends AuthTck {
    @Override
    protected String listenUri() {
        return "aeron:udp?endpoint=127.0.0.1:0";
    }
}
