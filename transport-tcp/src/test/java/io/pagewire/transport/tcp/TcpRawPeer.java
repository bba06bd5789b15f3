package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.tck.RawPeer;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.List;

/** Plain-socket access to a TCP listener for the TCK's hostile-input cases. */
final class TcpRawPeer implements RawPeer {

    private static Socket socket(String uri) throws IOException {
        TransportUri u = TransportUri.parse(uri);
        Socket s = new Socket();
        s.connect(new InetSocketAddress(u.host(), u.port()), 10_000);
        s.setTcpNoDelay(true);
        return s;
    }

    /** Background socket for writes; urgent socket for the destination's answers. */
    private static final class Stream implements RawStream {
        private final Socket write;
        private final Socket read;

        Stream(Socket write, Socket read) {
            this.write = write;
            this.read = read;
        }

        @Override
        public void write(byte[] bytes) throws IOException {
            write.getOutputStream().write(bytes);
            write.getOutputStream().flush();
        }

        @Override
        public byte[] readUntilClosed(Duration timeout) throws IOException {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            long deadline = System.nanoTime() + timeout.toNanos();
            InputStream in = read.getInputStream();
            byte[] buf = new byte[8192];
            while (true) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (left <= 0) {
                    throw new AssertionError("the destination did not close within " + timeout + " (got " + out.size() + " bytes)");
                }
                read.setSoTimeout((int) Math.max(1, left));
                int n;
                try {
                    n = in.read(buf);
                } catch (SocketTimeoutException e) {
                    continue;
                } catch (java.net.SocketException e) {
                    // A reset after the destination's ERROR frame still counts as closing.
                    return out.toByteArray();
                }
                if (n < 0) {
                    return out.toByteArray();
                }
                out.write(buf, 0, n);
            }
        }

        @Override
        public void close() throws IOException {
            try {
                write.close();
            } finally {
                read.close();
            }
        }
    }

    @Override
    public RawStream open(String listenerUri) throws IOException {
        Socket s = socket(listenerUri);
        return new Stream(s, s);
    }

    /**
     * {@inheritDoc}
     * With {@code urgent-channel=shared} in the URI the session has one connection, channel 0,
     * which carries the HELLO, the hostile frames and the destination's answers.
     */
    @Override
    public RawStream openSession(String listenerUri, List<RegionDescriptor> regions, boolean dataDigest, int maxPayload) throws IOException {
        long session = 0x7e57_5e55_1011L;
        Socket urgent = socket(listenerUri);
        if ("shared".equals(TransportUri.parse(listenerUri).options().get("urgent-channel"))) {
            urgent.getOutputStream().write(sharedHello(regions, dataDigest, maxPayload, session, 1));
            readAck(urgent);
            return new Stream(urgent, urgent);
        }
        urgent.getOutputStream().write(TransportTck.helloBytes(regions, Wire.VERSION, dataDigest, maxPayload, session));
        Socket bg = socket(listenerUri);
        byte[] join = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH];
        MemorySegment j = MemorySegment.ofArray(join);
        Wire.writePreamble(j, Wire.VERSION);
        new FrameHeader(j.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, 1, session, 0, 0);
        bg.getOutputStream().write(join);
        readAck(urgent);
        return new Stream(bg, urgent);
    }

    /** Preamble plus a HELLO asking for a shared channel 0 and {@code channels} channels in all. */
    static byte[] sharedHello(List<RegionDescriptor> regions, boolean dataDigest, int maxPayload, long session, int channels) {
        Hello hello = new Hello(session, (dataDigest ? Hello.FLAG_DATA_DIGEST : 0) | Hello.FLAG_SHARED_CHANNEL, channels, maxPayload, 500,
                5000, regions);
        int len = hello.encodedLength();
        byte[] b = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH + len];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, Wire.VERSION);
        new FrameHeader(s.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.HELLO, 0, 0, 0, 0, len);
        hello.encode(s.asSlice(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH));
        return b;
    }

    /** Reads the destination's preamble and HELLO_ACK. */
    static void readAck(Socket urgent) throws IOException {
        urgent.setSoTimeout(30_000);
        byte[] ack = urgent.getInputStream().readNBytes(Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH);
        if (ack.length < Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH) {
            throw new IOException("destination closed during the handshake");
        }
        FrameHeader h = new FrameHeader(MemorySegment.ofArray(ack).asSlice(Wire.PREAMBLE_LENGTH)).decode();
        if (h.type() != FrameType.HELLO_ACK) {
            throw new IOException("expected HELLO_ACK, got " + FrameType.name(h.type()) + ": "
                    + new String(urgent.getInputStream().readNBytes(h.payloadLength())));
        }
    }
}
