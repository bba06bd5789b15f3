package io.pagewire.transport.unix;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.stream.StreamConnection;
import io.pagewire.transport.spi.kit.stream.StreamListener;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.Hello;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

/** Accepts sources on a unix socket path: the kit's stream listener, plus the memory a source hands over. */
final class UnixListener extends StreamListener<SharedMemory> {
    private final UnixOptions options;
    private final Path path;

    UnixListener(TransportContext context, NativeSocket server, String uri, Path path, UnixOptions options) {
        super(context, server, uri, "unix", options.handshakeTimeoutMs());
        this.options = options;
        this.path = path;
    }

    @Override
    protected void tuneUrgent(NativeSocket s, Hello hello) {
        // a local socket: nothing to mark or keep alive
    }

    @Override
    protected void tuneBackground(NativeSocket s, Hello hello) throws IOException {
        UnixTransportProvider.tuneBackground(s, options);
    }

    @Override
    protected Set<Capability> capabilities(Hello h) {
        return UnixTransportProvider.capabilities(h.channels(), h.dataDigest(), h.sharedMemory());
    }

    @Override
    protected int backgroundNice() {
        return options.backgroundNice();
    }

    @Override
    protected SharedMemory afterHello(NativeSocket s, Hello hello) throws IOException {
        if (!hello.sharedMemory()) {
            return null;
        }
        if (!options.shareMemory()) {
            throw new TransportException(Kind.HANDSHAKE, "the source hands its memory over, but this destination does not take it;"
                    + " listen with share-memory=true (or connect without it to copy the pages)");
        }
        return SharedMemory.receive(s, context.layout());
    }

    @Override
    protected void releaseAttachment(SharedMemory shared) {
        if (shared != null) {
            shared.close();
        }
    }

    @Override
    protected StreamConnection connection(KitConnection.Setup setup, Session<NativeSocket, SharedMemory> s, NativeSocket[] background) {
        SharedMemory shared = s.attachment();
        return new UnixConnection(setup, s.urgent(), background, 1, options.backgroundNice(),
                shared == null ? Set.of() : shared.regionIds(), shared);
    }

    @Override
    protected void closeListening() {
        super.closeListening();
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            System.getLogger(UnixListener.class.getName()).log(System.Logger.Level.WARNING,
                    "unix: could not remove the socket file " + path + " of a closed listener: " + e);
        }
    }
}
