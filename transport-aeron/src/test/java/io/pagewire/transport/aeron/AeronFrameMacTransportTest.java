package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.tck.TransportTck;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.stream.Stream;

/**
 * The TCK over Aeron UDP with {@code frame-mac=on} (a MAC after every frame, both streams, both
 * directions), keyed by a pre-shared key. (No raw peer: its frames carry no MAC; {@link AeronFrameMacTest}
 * covers changed frames.)
 */
class AeronFrameMacTransportTest extends TransportTck {
    @Override
    protected Stream<String> listenUris() {
        try {
            return Stream.of("aeron:udp?endpoint=127.0.0.1:0&frame-mac=on&psk-file=" + TckCredentials.get().psk);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
