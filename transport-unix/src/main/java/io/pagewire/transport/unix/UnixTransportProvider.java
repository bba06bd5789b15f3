package io.pagewire.transport.unix;

import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportProvider;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.kit.KitConnection;
import io.pagewire.transport.spi.kit.stream.StreamConnection;
import io.pagewire.transport.spi.kit.stream.StreamHandshake;
import io.pagewire.linux.ErrnoException;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.wire.Hello;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;

/**
 * {@code unix:///path/to.sock?share-memory=true|false&channels=N&...}: migrations between two
 * processes on one host (QEMU and Cloud Hypervisor both migrate locally over unix sockets). See
 * {@code docs/uri-reference.md}.
 */
public final class UnixTransportProvider implements TransportProvider {
    private static final int ECONNREFUSED = 111;

    @Override
    public String scheme() {
        return "unix";
    }

    @Override
    public Map<String, String> options() {
        return UnixOptions.DESCRIPTIONS;
    }

    @Override
    public Set<Capability> capabilities() {
        return EnumSet.of(Capability.ZERO_COPY_SEND, Capability.ZERO_COPY_RECEIVE, Capability.MULTI_STREAM,
                Capability.SEPARATE_URGENT_PATH, Capability.DATA_DIGEST, Capability.SHARED_MEMORY);
    }

    /** @return the capabilities of one connection with these settings */
    static Set<Capability> capabilities(int channels, boolean dataDigest, boolean sharedMemory) {
        EnumSet<Capability> c = EnumSet.of(Capability.ZERO_COPY_RECEIVE, Capability.SEPARATE_URGENT_PATH);
        c.add(dataDigest ? Capability.DATA_DIGEST : Capability.ZERO_COPY_SEND);
        if (channels > 1) {
            c.add(Capability.MULTI_STREAM);
        }
        if (sharedMemory) {
            c.add(Capability.SHARED_MEMORY);
        }
        return Set.copyOf(c);
    }

    static void tuneBackground(NativeSocket s, UnixOptions o) throws IOException {
        if (o.bufferBytes() > 0) {
            s.sendBufferBytes(o.bufferBytes());
            s.receiveBufferBytes(o.bufferBytes());
        }
    }

    @Override
    public Listener listen(TransportUri uri, TransportContext context) {
        UnixOptions options = UnixOptions.parse(uri);
        Path path = Path.of(uri.requirePath());
        NativeSocket server;
        try {
            removeStaleSocket(path, uri);
            server = NativeSocket.listen(path, 128);
        } catch (IOException | IllegalArgumentException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "unix: cannot listen on " + uri.text() + ": " + e.getMessage(), e);
        }
        return new UnixListener(context, server, uri.text(), path, options);
    }

    /** A socket file nobody listens on (a listener that died) is removed; anything else is left alone and refused. */
    private static void removeStaleSocket(Path path, TransportUri uri) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!isSocket(path)) {
            throw new TransportException(Kind.CONNECT_FAILED, "unix: " + path + " in '" + uri.text() + "' exists and is not a socket");
        }
        try (NativeSocket probe = NativeSocket.connect(path)) {
            throw new TransportException(Kind.CONNECT_FAILED, "unix: another process listens on " + path + " ('" + uri.text() + "')");
        } catch (ErrnoException e) {
            if (e.errno() != ECONNREFUSED) {
                throw e;
            }
            Files.deleteIfExists(path); // stale: its listener is gone
        }
    }

    /** @return true for a socket file (neither regular file, directory nor link) */
    private static boolean isSocket(Path path) throws IOException {
        return Files.readAttributes(path, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS).isOther();
    }

    @Override
    public Connection connect(TransportUri uri, TransportContext context) {
        UnixOptions o = UnixOptions.parse(uri);
        Path path = Path.of(uri.requirePath());
        Set<Integer> shared = o.shareMemory() ? SharedMemory.sharable(context.layout()) : Set.of();
        if (o.shareMemory() && shared.isEmpty()) {
            throw new TransportException(Kind.INVALID_CONFIG, "share-memory=true in '" + uri.text() + "', but no region of the layout is"
                    + " backed by a file (RamRegion.withFile): nothing to hand over; use a memfd or file backing, or drop the option");
        }
        int flags = (o.dataDigest() ? Hello.FLAG_DATA_DIGEST : 0) | (o.shareMemory() ? Hello.FLAG_SHARED_MEMORY : 0);
        Hello hello = Handshakes.hello(context, uri.text(), "batch-bytes", flags, o.channels(), o.batchBytes());
        KitConnection.Setup setup = new KitConnection.Setup(Role.SOURCE, uri.text(), context.layout(), context.handler(),
                context.heartbeatIntervalNs(), context.peerTimeoutNs(), o.batchBytes(), o.dataDigest(), false, o.channels(),
                capabilities(o.channels(), o.dataDigest(), o.shareMemory()), StreamConnection.pendingLimit(o.queueDepth(), o.channels(), o.batchBytes()));
        StreamHandshake.Dialer dialer = new StreamHandshake.Dialer() {
            @Override
            public NativeSocket dial(long timeoutMs) throws IOException {
                return NativeSocket.connect(path);
            }

            @Override
            public void urgent(NativeSocket s) {
                // a local socket: nothing to mark or keep alive
            }

            @Override
            public void background(NativeSocket s) throws IOException {
                tuneBackground(s, o);
            }

            @Override
            public void afterHello(NativeSocket urgent, Hello h) throws IOException {
                if (h.sharedMemory()) {
                    SharedMemory.send(urgent, context.layout());
                }
            }
        };
        return StreamHandshake.connect("unix", uri.text(), context, hello, dialer,
                (urgent, background) -> new UnixConnection(setup, urgent, background, o.queueDepth(), o.backgroundNice(), shared, null));
    }
}
