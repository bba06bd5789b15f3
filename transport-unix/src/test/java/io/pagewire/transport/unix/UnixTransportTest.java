package io.pagewire.transport.unix;

import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.stream.Stream;

/** The TCK over unix domain sockets: one stream without digests, several with, copying pages. */
class UnixTransportTest extends TransportTck {
    private static final Path DIR;

    static {
        try {
            DIR = Files.createTempDirectory("pagewire-unix-tck");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    protected Stream<String> listenUris() {
        return Stream.of("unix://" + DIR.resolve("one.sock"), "unix://" + DIR.resolve("four.sock") + "?channels=4&data-digest=true");
    }

    @Override
    protected Optional<RawPeer> rawPeer() {
        return Optional.of(new UnixRawPeer());
    }
}
