package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;

import java.util.Optional;
import java.util.stream.Stream;

/**
 * The TCK over TCP: one stream with data digests, several streams with and without (those paced
 * by the kernel below 4 GiB/s), and the urgent lane sharing background channel 0 (no priority lane).
 */
class TcpTransportTest extends TransportTck {
    @Override
    protected Stream<String> listenUris() {
        return Stream.of(
                "tcp://127.0.0.1:0?channels=1",
                "tcp://127.0.0.1:0?channels=4&data-digest=false&background-max-rate=4g",
                "tcp://[::1]:0?channels=2&batch-bytes=64k",
                "tcp://127.0.0.1:0?channels=2&urgent-channel=shared");
    }

    @Override
    protected boolean urgentLaneHasOwnPath(String listenUri) {
        return !listenUri.contains("urgent-channel=shared");
    }

    @Override
    protected Optional<RawPeer> rawPeer() {
        return Optional.of(new TcpRawPeer());
    }
}
