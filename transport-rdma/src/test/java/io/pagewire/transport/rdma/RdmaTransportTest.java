package io.pagewire.transport.rdma;

import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;

import java.util.Optional;
import java.util.stream.Stream;

/**
 * The TCK over the simulated fabric: registration on demand (the default), and pin-all with data
 * digests and small batches. Peers cannot live in another JVM here; peer death is covered by
 * {@link RdmaFailureTest}'s failure injection.
 */
class RdmaTransportTest extends TransportTck {
    @Override
    protected Stream<String> listenUris() {
        return Stream.of(
                "rdma://127.0.0.1:0",
                "rdma://127.0.0.1:0?pin-all=true&data-digest=true&batch-bytes=64k");
    }

    @Override
    protected Optional<RawPeer> rawPeer() {
        return Optional.of(new RdmaRawPeer());
    }

    @Override
    protected boolean peersCanRunInAnotherProcess() {
        return false;
    }
}
