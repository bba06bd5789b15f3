package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;

import java.util.Optional;

/** The TCK's authentication cases over the simulated RDMA fabric, registering all RAM up front. */
class RdmaAuthTest extends AuthTck {
    @Override
    protected String listenUri() {
        return "rdma://127.0.0.1:0?pin-all=true";
    }

    @Override
    protected Optional<AuthWire> authWire() {
        return Optional.of(new RdmaAuthWire());
    }
}
