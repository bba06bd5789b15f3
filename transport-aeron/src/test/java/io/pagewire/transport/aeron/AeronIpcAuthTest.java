package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.tck.AuthTck;
import io.pagewire.transport.spi.tck.AuthWire;

import java.util.Optional;

/** The TCK's authentication cases over Aeron IPC (one embedded driver per role in this JVM). */
class AeronIpcAuthTest extends AuthTck {
    @Override
    protected String listenUri() {
        return "aeron:ipc?stream-id=0"; // each listener picks a free stream id
    }

    @Override
    protected Optional<AuthWire> authWire() {
        return Optional.of(new AeronAuthWire());
    }
}
