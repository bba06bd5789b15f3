package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;

import java.util.Optional;

/** The TCK's authentication cases over Aeron UDP (loopback) with embedded media drivers. */
class AeronAuthTest extends AuthTck {
    @Override
    protected String listenUri() {
        return "aeron:udp?endpoint=127.0.0.1:0";
    }

    @Override
    protected Optional<AuthWire> authWire() {
        return Optional.of(new AeronAuthWire());
    }
}
