package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * A source written with plain sockets, byte by byte from the wire format, for cases a correct
 * source never produces: frames after COMPLETE, the same page on two channels, JOINs from strangers.
 */
final class RawSource implements AutoCloseable {
    final Socket urgent;
    final Socket[] background;
    final long session;

    private RawSource(Socket urgent, Socket[] background, long session) {
        this.urgent = urgent;
        this.background = background;
        this.session = session;
    }

    /** @return a socket connected to the listener at {@code port}, from local address {@code from} */
    static Socket socket(int port, String from) throws IOException {
        Socket s = new Socket();
        s.bind(new InetSocketAddress(InetAddress.getByName(from), 0));
        s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 10_000);
        s.setTcpNoDelay(true);
        return s;
    }

    /** Preamble and HELLO for {@code channels} background channels. */
    static byte[] hello(List<RegionDescriptor> regions, int channels, boolean digest, long session) {
        Hello hello = new Hello(session, digest ? Hello.FLAG_DATA_DIGEST : 0, channels, 256 * 1024, 500, 5000, regions);
        byte[] payload = new byte[hello.encodedLength()];
        hello.encode(MemorySegment.ofArray(payload));
        return concat(preamble(Wire.VERSION, 0), frame(FrameType.HELLO, 0, 0, 0, 0, payload, false));
    }

    /** Preamble and JOIN. */
    static byte[] join(long session, int channel, int channels) {
        return concat(preamble(Wire.VERSION, 0), frame(FrameType.JOIN, channels, session, channel, null, false));
    }

    static byte[] preamble(int version, int reserved) {
        byte[] b = new byte[Wire.PREAMBLE_LENGTH];
        MemorySegment s = MemorySegment.ofArray(b);
        Wire.writePreamble(s, version);
        s.set(Wire.U32, 12, reserved);
        return b;
    }

    /** One frame: header (with its CRC), payload, and the payload's CRC32C when {@code digest}. */
    static byte[] frame(int type, int region, long first, long count, int extraFlags, byte[] payload, boolean digest) {
        int len = payload == null ? 0 : payload.length;
        byte[] b = new byte[FrameHeader.LENGTH + len + (digest ? Wire.DIGEST_LENGTH : 0)];
        MemorySegment s = MemorySegment.ofArray(b);
        new FrameHeader(s.asSlice(0, FrameHeader.LENGTH)).encode(type, (digest ? FrameHeader.FLAG_DATA_DIGEST : 0) | extraFlags, region,
                first, count, len);
        if (len > 0) {
            System.arraycopy(payload, 0, b, FrameHeader.LENGTH, len);
        }
        if (digest) {
            CRC32C crc = new CRC32C();
            crc.update(payload, 0, len);
            s.set(Wire.U32, FrameHeader.LENGTH + len, (int) crc.getValue());
        }
        return b;
    }

    /** As {@link #frame(int, int, long, long, int, byte[], boolean)} without extra flags. */
    static byte[] frame(int type, int region, long first, long count, byte[] payload, boolean digest) {
        return frame(type, region, first, count, 0, payload, digest);
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    /** Opens the urgent connection and the background ones, HELLO and JOINs, and reads HELLO_ACK. */
    static RawSource handshake(int port, List<RegionDescriptor> regions, int channels, boolean digest, long session) throws IOException {
        Socket u = socket(port, "127.0.0.1");
        u.getOutputStream().write(hello(regions, channels, digest, session));
        Socket[] bg = new Socket[channels];
        for (int c = 0; c < channels; c++) {
            bg[c] = socket(port, "127.0.0.1");
            bg[c].getOutputStream().write(join(session, c, channels));
        }
        RawSource s = new RawSource(u, bg, session);
        byte[] preamble = s.readUrgent(Wire.PREAMBLE_LENGTH);
        if (MemorySegment.ofArray(preamble).get(Wire.U64, 0) != Wire.MAGIC) {
            throw new IOException("no preamble from the destination");
        }
        FrameHeader h = s.readHeader();
        if (h.type() != FrameType.HELLO_ACK) {
            throw new IOException("expected HELLO_ACK, got " + FrameType.name(h.type()) + ": " + new String(s.readUrgent(h.payloadLength())));
        }
        return s;
    }

    void send(int channel, byte[] bytes) throws IOException {
        background[channel].getOutputStream().write(bytes);
        background[channel].getOutputStream().flush();
    }

    byte[] readUrgent(int n) throws IOException {
        urgent.setSoTimeout(30_000);
        byte[] b = urgent.getInputStream().readNBytes(n);
        if (b.length < n) {
            throw new IOException("the destination closed the urgent connection after " + b.length + " of " + n + " bytes");
        }
        return b;
    }

    FrameHeader readHeader() throws IOException {
        return new FrameHeader(MemorySegment.ofArray(readUrgent(FrameHeader.LENGTH))).decode();
    }

    /** @return the next frame on the urgent connection that is not a HEARTBEAT, as its header (payload skipped) */
    FrameHeader nextUrgentFrame() throws IOException {
        while (true) {
            FrameHeader h = readHeader();
            byte[] payload = readUrgent(h.payloadLength());
            if (h.type() == FrameType.ERROR) {
                throw new IOException("ERROR from the destination: " + new String(payload, java.nio.charset.StandardCharsets.UTF_8));
            }
            if (h.type() != FrameType.HEARTBEAT) {
                return h;
            }
        }
    }

    /** @return everything the destination sends on {@code s} until it closes it (at most {@code timeout}) */
    static byte[] readUntilClosed(Socket s, Duration timeout) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        long deadline = System.nanoTime() + timeout.toNanos();
        InputStream in = s.getInputStream();
        byte[] buf = new byte[8192];
        while (true) {
            long left = (deadline - System.nanoTime()) / 1_000_000;
            if (left <= 0) {
                throw new AssertionError("the destination did not close within " + timeout + " (got " + out.size() + " bytes)");
            }
            s.setSoTimeout((int) Math.max(1, left));
            int n;
            try {
                n = in.read(buf);
            } catch (SocketTimeoutException e) {
                continue;
            } catch (SocketException e) {
                return out.toByteArray(); // a reset after the ERROR still counts as closing
            }
            if (n < 0) {
                return out.toByteArray();
            }
            out.write(buf, 0, n);
        }
    }

    /** @return the frame types in a byte stream from the destination (after an optional preamble) */
    static List<Integer> frameTypes(byte[] answer) {
        java.util.ArrayList<Integer> types = new java.util.ArrayList<>();
        MemorySegment s = MemorySegment.ofArray(answer);
        int off = answer.length >= Wire.PREAMBLE_LENGTH && s.get(Wire.U64, 0) == Wire.MAGIC ? Wire.PREAMBLE_LENGTH : 0;
        while (off + FrameHeader.LENGTH <= answer.length) {
            FrameHeader h = new FrameHeader(s.asSlice(off, FrameHeader.LENGTH)).decode();
            types.add(h.type());
            off += FrameHeader.LENGTH + h.payloadLength();
        }
        return types;
    }

    @Override
    public void close() throws IOException {
        urgent.close();
        for (Socket s : background) {
            s.close();
        }
    }
}
