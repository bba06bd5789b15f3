package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.tck.TransportTck;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.stream.Stream;

/**
 * The TCK over TCP with TLS 1.3 ({@code tls=on}) on every connection, keyed by the TCK's test CA:
 * one stream with data digests, several without. (No raw peer: the hostile-byte cases speak in
 * clear, which a TLS listener refuses before reading a frame; {@link TcpTlsTest} covers that.)
 */
class TcpTlsTransportTest extends TransportTck {
    @Override
    protected Stream<String> listenUris() {
        String creds;
        try {
            creds = "tls=on&tls-creds=" + TckCredentials.get().certs;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
        // One row (TLS on the urgent and on two background connections): the TCK takes minutes per row.
        return Stream.of("tcp://127.0.0.1:0?channels=2&" + creds);
    }
}
