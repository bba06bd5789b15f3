package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;

import java.util.Optional;
import java.util.stream.Stream;

/**
 * The TCK over Aeron, with real embedded media drivers: UDP over loopback (defaults: data digests, one datagram per
 * frame) and IPC (no digests), each JVM of the child-process cases with its own drivers.
 */
class AeronTransportTest extends TransportTck {
    @Override
    protected Stream<String> listenUris() {
        return Stream.of(
                "aeron:udp?endpoint=127.0.0.1:0",
                "aeron:ipc?data-digest=false");
    }

    @Override
    protected Optional<RawPeer> rawPeer() {
        return Optional.of(new AeronRawPeer());
    }
}
