package io.pagewire.transport.unix;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.linux.ErrnoException;
import io.pagewire.linux.NativeSocket;
import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Wire;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/** Raw unix-socket access to a listener for the TCK's hostile-input cases. */
final class UnixRawPeer implements RawPeer {

    static NativeSocket socket(String uri) throws IOException {
        return NativeSocket.connect(Path.of(TransportUri.parse(uri).requirePath()));
    }

    static void write(NativeSocket s, byte[] bytes) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            s.sendFully(arena.allocateFrom(ValueLayout.JAVA_BYTE, bytes), 0, bytes.length);
        }
    }

    /** Background socket for writes; urgent socket for the destination's answers. */
    private record Stream(NativeSocket write, NativeSocket read) implements RawStream {
        @Override
        public void write(byte[] bytes) throws IOException {
            UnixRawPeer.write(write, bytes);
        }

        @Override
        public byte[] readUntilClosed(Duration timeout) throws IOException {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            long deadline = System.nanoTime() + timeout.toNanos();
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment one = arena.allocate(1);
                while (true) {
                    long left = (deadline - System.nanoTime()) / 1_000_000;
                    if (left <= 0) {
                        throw new AssertionError("the destination did not close within " + timeout + " (got " + out.size() + " bytes)");
                    }
                    if (!read.pollReadable(left)) {
                        continue;
                    }
                    long n;
                    try {
                        n = read.recvFully(one, 0, 1);
                    } catch (ErrnoException e) {
                        return out.toByteArray(); // a reset after the destination's ERROR still counts as closing
                    }
                    if (n < 0) {
                        return out.toByteArray();
                    }
                    out.write(one.get(ValueLayout.JAVA_BYTE, 0));
                }
            }
        }

        @Override
        public void close() {
            try {
                write.close();
            } finally {
                read.close();
            }
        }
    }

    @Override
    public RawStream open(String listenerUri) throws IOException {
        NativeSocket s = socket(listenerUri);
        return new Stream(s, s);
    }

    @Override
    public RawStream openSession(String listenerUri, List<RegionDescriptor> regions, boolean dataDigest, int maxPayload) throws IOException {
        long session = 0x7e57_5e55_1012L;
        NativeSocket urgent = socket(listenerUri);
        write(urgent, TransportTck.helloBytes(regions, Wire.VERSION, dataDigest, maxPayload, session));
        NativeSocket bg = socket(listenerUri);
        write(bg, TransportTck.joinBytes(session, 0, 1));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ack = arena.allocate(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH);
            urgent.receiveTimeoutMs(30_000);
            if (urgent.recvFully(ack, 0, ack.byteSize()) < 0) {
                throw new IOException("destination closed during the handshake");
            }
            FrameHeader h = new FrameHeader(ack.asSlice(Wire.PREAMBLE_LENGTH)).decode();
            if (h.type() != FrameType.HELLO_ACK) {
                throw new IOException("expected HELLO_ACK, got " + FrameType.name(h.type()));
            }
            urgent.receiveTimeoutMs(0);
        }
        return new Stream(bg, urgent);
    }
}
