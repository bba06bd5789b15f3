package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.verbs.CompletionQueue;
import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.QpConfig;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.SendBatch;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.rdma.verbs.WorkCompletions;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.TransportUri;
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
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static io.pagewire.transport.spi.wire.Wire.U16;
import static io.pagewire.transport.spi.wire.Wire.U32;
import static io.pagewire.transport.spi.wire.Wire.U64;

/**
 * A hostile source on the simulated fabric, built from the verbs port alone (none of the
 * transport's sending code): it sends whatever bytes a test gives it as messages, and RDMA-writes
 * whatever it likes wherever the destination's registrations let it.
 *
 * <p>For the TCK's byte-stream frames, each {@code write} is one frame mapped onto the RDMA
 * protocol as a source would send it: a PAGES frame's payload goes by RDMA WRITE to the pages its
 * header names (when they lie inside the region: writes outside registrations are tested
 * separately, the NIC refuses them), then the header and its digest go as the notification; a
 * PAGES header without payload bytes is sent as a bare notification (a source claiming pages it
 * never wrote); a frame cut short writes what it has and sends no notification (a source that
 * died mid-batch). Every other frame is sent as it is.
 */
final class RdmaRawPeer implements RawPeer {
    static final int DEPTH = 16;
    private final SimFabric fabric = SimFabric.instance();

    /** One raw queue pair with a few buffers. Not thread-safe. */
    final class RawQp implements AutoCloseable {
        final RdmaEndpoint ep;
        final ProtectionDomain pd;
        final boolean ownsPd;
        final CompletionQueue cq;
        final QueuePair qp;
        final Arena arena = Arena.ofShared();
        final MemorySegment rx;
        final MemorySegment tx;
        final MemoryRegion rxMr;
        final MemoryRegion txMr;
        final WorkCompletions wc = new WorkCompletions(32);
        final SendBatch batch = new SendBatch(4);
        final ByteArrayOutputStream received = new ByteArrayOutputStream();
        byte[] firstMessage;
        int messages;
        int lastStatus = Verbs.WC_SUCCESS;
        boolean closedByPeer;

        RawQp(String uri, ProtectionDomain shared, String name) throws IOException {
            this(uri, shared, name, new byte[0]);
        }

        /** @param privateData the connect request's private data (e.g. {@link Protocol#joinRequest}) */
        RawQp(String uri, ProtectionDomain shared, String name, byte[] privateData) throws IOException {
            TransportUri u = TransportUri.parse(uri);
            ep = fabric.resolve(u.host(), u.port(), TimeUnit.SECONDS.toNanos(10));
            ownsPd = shared == null;
            pd = shared == null ? ep.device().allocPd() : shared;
            cq = ep.device().createCq(256);
            qp = ep.createQueuePair(pd, cq, new QpConfig(name, 64, DEPTH + 1, 0));
            rx = arena.allocate((long) (DEPTH + 1) * Protocol.RX_BYTES, 4096);
            tx = arena.allocate(Protocol.RX_BYTES + (1 << 20), 4096);
            rxMr = pd.register(rx, Verbs.ACCESS_LOCAL_WRITE);
            txMr = pd.register(tx, Verbs.ACCESS_LOCAL_WRITE);
            for (int i = 0; i <= DEPTH; i++) {
                qp.postRecv(i, rx.address() + (long) i * Protocol.RX_BYTES, Protocol.RX_BYTES, rxMr.lkey());
            }
            ep.connect(TimeUnit.SECONDS.toNanos(10), privateData);
        }

        /** Sends one message: an envelope returning no credits, then the bytes. */
        void send(byte[] bytes) throws IOException {
            byte[] m = new byte[bytes.length + Protocol.ENVELOPE];
            System.arraycopy(bytes, 0, m, Protocol.ENVELOPE, bytes.length);
            sendMessage(m);
        }

        /** Sends exactly these bytes as one message (envelope included, or not: hostile tests decide). */
        int sendMessage(byte[] message) throws IOException {
            if (message.length > Protocol.RX_BYTES) {
                throw new IOException("raw message of " + message.length + " bytes is larger than a receive buffer");
            }
            MemorySegment.copy(message, 0, tx, ValueLayout.JAVA_BYTE, 0, message.length);
            batch.clear().send(1001, Verbs.SEND_SIGNALED, tx.address(), message.length, txMr.lkey());
            qp.postSend(batch);
            return awaitSend();
        }

        /** RDMA-writes bytes to a remote address; returns the completion status. */
        int write(byte[] data, long remote, int rkey) throws IOException {
            long at = Protocol.RX_BYTES;
            MemorySegment.copy(data, 0, tx, ValueLayout.JAVA_BYTE, at, data.length);
            batch.clear().rdma(Verbs.WR_RDMA_WRITE, 1002, Verbs.SEND_SIGNALED, tx.address() + at, data.length, txMr.lkey(), remote, rkey);
            qp.postSend(batch);
            return awaitSend();
        }

        /** RDMA-reads into the local buffer; returns the completion status. */
        int read(int length, long remote, int rkey) throws IOException {
            batch.clear().rdma(Verbs.WR_RDMA_READ, 1003, Verbs.SEND_SIGNALED, tx.address() + Protocol.RX_BYTES, length, txMr.lkey(), remote, rkey);
            qp.postSend(batch);
            return awaitSend();
        }

        private int awaitSend() throws IOException {
            sendStatus = -1;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (sendStatus < 0) {
                if (System.nanoTime() > deadline) {
                    throw new IOException("no completion for a raw send within 10 s");
                }
                pollSome();
            }
            lastStatus = sendStatus;
            return sendStatus;
        }

        private int sendStatus = -1;

        /** Takes one batch of completions: receives are recorded, a send's status is kept for {@link #awaitSend}. */
        private void handle() {
            for (int i = 0; i < wc.count(); i++) {
                boolean recv = wc.wrId(i) <= DEPTH && (wc.opcode(i) == Verbs.WC_RECV || wc.status(i) != Verbs.WC_SUCCESS);
                if (recv) {
                    onRecv(i);
                } else {
                    sendStatus = wc.status(i);
                }
            }
        }

        private void onRecv(int i) {
            if (wc.status(i) != Verbs.WC_SUCCESS) {
                closedByPeer = true;
                return;
            }
            int len = wc.byteLength(i);
            long off = wc.wrId(i) * Protocol.RX_BYTES;
            byte[] m = rx.asSlice(off + Protocol.ENVELOPE, len - Protocol.ENVELOPE).toArray(ValueLayout.JAVA_BYTE);
            if (messages++ == 0) {
                firstMessage = m;
            }
            received.writeBytes(m);
        }

        /** Waits for the first message the destination sends. */
        byte[] awaitFirst(Duration timeout) throws IOException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (firstMessage == null && !closedByPeer && System.nanoTime() < deadline) {
                pollSome();
            }
            if (firstMessage == null) {
                throw new IOException(closedByPeer ? "the destination disconnected without answering" : "no answer within " + timeout);
            }
            return firstMessage;
        }

        private void pollSome() throws VerbsException {
            if (cq.poll(wc) > 0) {
                handle();
                return;
            }
            cq.requestNotify();
            if (cq.poll(wc) > 0) {
                handle();
                return;
            }
            cq.awaitEvent(TimeUnit.MILLISECONDS.toNanos(20));
        }

        /** Waits until {@code count} messages arrived or the destination disconnected. */
        void awaitMessages(int count, Duration timeout) throws IOException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (messages < count && !closedByPeer) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("no message " + count + " from the destination within " + timeout);
                }
                pollSome();
            }
        }

        /** Everything received (envelopes removed) until the destination disconnected. */
        byte[] readUntilClosed(Duration timeout) throws IOException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (!closedByPeer) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("the destination did not disconnect within " + timeout + " (got " + received.size() + " bytes)");
                }
                pollSome();
            }
            return received.toByteArray();
        }

        private boolean closed;

        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            ep.close();
            cq.close();
            rxMr.deregister();
            txMr.deregister();
            arena.close();
            if (ownsPd) {
                pd.close();
            }
        }
    }

    /** A raw connection: writes go out as messages, answers are read on the same queue pair. */
    private final class Plain implements RawStream {
        final RawQp qp;

        Plain(RawQp qp) {
            this.qp = qp;
        }

        @Override
        public void write(byte[] bytes) throws IOException {
            qp.send(bytes);
        }

        @Override
        public byte[] readUntilClosed(Duration timeout) throws IOException {
            return qp.readUntilClosed(timeout);
        }

        @Override
        public void close() {
            qp.close();
        }
    }

    /** A session after a correct handshake: background writes map frames onto RDMA; answers come on the urgent queue pair. */
    final class Session implements RawStream {
        final RawQp urgent;
        final RawQp background;
        final ProtectionDomain pd;
        final Protocol.Regions regions;
        final List<RegionDescriptor> layout;

        Session(RawQp urgent, RawQp background, ProtectionDomain pd, Protocol.Regions regions, List<RegionDescriptor> layout) {
            this.urgent = urgent;
            this.background = background;
            this.pd = pd;
            this.regions = regions;
            this.layout = layout;
        }

        @Override
        public void write(byte[] bytes) throws IOException {
            MemorySegment b = MemorySegment.ofArray(bytes);
            int type = bytes.length >= FrameHeader.LENGTH ? Short.toUnsignedInt(b.get(U16, 0)) : 0;
            if (type == FrameType.PAGE_LIST && bytes.length > FrameHeader.LENGTH) {
                writePageList(b, bytes);
                return;
            }
            if (type != FrameType.PAGES || bytes.length == FrameHeader.LENGTH) {
                background.send(bytes);
                return;
            }
            int flags = Short.toUnsignedInt(b.get(U16, 2));
            int region = b.get(U32, 4);
            long first = b.get(U64, 8);
            long payload = Integer.toUnsignedLong(b.get(U32, 24));
            int avail = bytes.length - FrameHeader.LENGTH;
            boolean digest = (flags & FrameHeader.FLAG_DATA_DIGEST) != 0 && avail == payload + Wire.DIGEST_LENGTH;
            int data = digest ? (int) payload : avail;
            if (region >= 0 && region < layout.size() && first >= 0 && first < layout.get(region).pageCount()
                    && data <= layout.get(region).sizeBytes() - first * layout.get(region).pageSize()) {
                int status = writePages(region, first * layout.get(region).pageSize(), java.util.Arrays.copyOfRange(bytes, FrameHeader.LENGTH,
                        FrameHeader.LENGTH + data));
                if (status != Verbs.WC_SUCCESS) {
                    throw new IOException("raw RDMA WRITE failed: " + Verbs.statusName(status));
                }
            }
            if (data < payload) {
                return; // cut short: the source dies before its notification
            }
            byte[] notification = java.util.Arrays.copyOf(bytes, FrameHeader.LENGTH + (digest ? Wire.DIGEST_LENGTH : 0));
            if (digest) {
                System.arraycopy(bytes, bytes.length - Wire.DIGEST_LENGTH, notification, FrameHeader.LENGTH, Wire.DIGEST_LENGTH);
            }
            background.send(notification);
        }

        /**
         * A PAGE_LIST: its pages go by RDMA WRITE to their indices when the list is one a correct
         * source could send (in the region, strictly ascending, lengths matching); then the header,
         * the indices and the digest go as the notification.
         */
        private void writePageList(MemorySegment b, byte[] bytes) throws IOException {
            int flags = Short.toUnsignedInt(b.get(U16, 2));
            int region = b.get(U32, 4);
            long n = b.get(U64, 16);
            long payload = Integer.toUnsignedLong(b.get(U32, 24));
            int avail = bytes.length - FrameHeader.LENGTH;
            boolean digest = (flags & FrameHeader.FLAG_DATA_DIGEST) != 0 && avail == payload + Wire.DIGEST_LENGTH;
            boolean wellFormed = region >= 0 && region < layout.size() && n >= 1 && n <= 1024
                    && payload == n * (layout.get(region).pageSize() + 8) && avail >= payload;
            if (wellFormed) {
                long previous = -1;
                for (int i = 0; i < n; i++) {
                    long p = b.get(U64, FrameHeader.LENGTH + 8L * i);
                    wellFormed &= p > previous && p < layout.get(region).pageCount();
                    previous = p;
                }
            }
            if (wellFormed) {
                int ps = (int) layout.get(region).pageSize();
                for (int i = 0; i < n; i++) {
                    long p = b.get(U64, FrameHeader.LENGTH + 8L * i);
                    int from = (int) (FrameHeader.LENGTH + 8 * n + (long) i * ps);
                    int status = writePages(region, p * ps, java.util.Arrays.copyOfRange(bytes, from, from + ps));
                    if (status != Verbs.WC_SUCCESS) {
                        throw new IOException("raw RDMA WRITE failed: " + Verbs.statusName(status));
                    }
                }
            }
            long inline = Math.min(avail, 8 * Math.max(0, Math.min(n, 1024)));
            byte[] notification = new byte[(int) (FrameHeader.LENGTH + inline + (digest ? Wire.DIGEST_LENGTH : 0))];
            System.arraycopy(bytes, 0, notification, 0, (int) (FrameHeader.LENGTH + inline));
            if (digest) {
                System.arraycopy(bytes, bytes.length - Wire.DIGEST_LENGTH, notification, (int) (FrameHeader.LENGTH + inline), Wire.DIGEST_LENGTH);
            }
            background.send(notification);
        }

        /** RDMA-writes into destination RAM at a region offset, registering chunks on demand. */
        int writePages(int region, long offset, byte[] data) throws IOException {
            Protocol.RegionKeys k = regions.regions().get(region);
            if (data.length == 0) {
                return Verbs.WC_SUCCESS;
            }
            int rkey = switch (k.mode()) {
                case Protocol.MODE_PINNED -> k.rkeys()[(int) (offset / Protocol.PIN_PIECE_BYTES)];
                case Protocol.MODE_ON_DEMAND -> register(region, offset / regions.chunkBytes(),
                        (offset + data.length - 1) / regions.chunkBytes() - offset / regions.chunkBytes() + 1);
                default -> throw new IOException("raw peer: staged regions are not written by this helper");
            };
            return background.write(data, k.base() + offset, rkey);
        }

        /** Sends RDMA_REGISTER on the urgent queue pair and returns the first chunk's rkey. */
        int register(int region, long firstChunk, long count) throws IOException {
            byte[] f = new byte[FrameHeader.LENGTH];
            new FrameHeader(MemorySegment.ofArray(f)).encode(Protocol.RDMA_REGISTER, 0, region, firstChunk, count, 0);
            int before = urgent.received.size();
            urgent.send(f);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (System.nanoTime() < deadline) {
                byte[] all = urgent.received.toByteArray();
                for (int off = before; off + FrameHeader.LENGTH <= all.length; ) {
                    FrameHeader h = new FrameHeader(MemorySegment.ofArray(java.util.Arrays.copyOfRange(all, off, off + FrameHeader.LENGTH))).decode();
                    if (h.type() == Protocol.RDMA_REGISTERED) {
                        return MemorySegment.ofArray(all).get(U32, off + FrameHeader.LENGTH);
                    }
                    off += FrameHeader.LENGTH + h.payloadLength();
                }
                if (urgent.closedByPeer) {
                    throw new IOException("the destination disconnected instead of registering");
                }
                urgent.pollSome();
            }
            throw new IOException("no RDMA_REGISTERED within 10 s");
        }

        @Override
        public byte[] readUntilClosed(Duration timeout) throws IOException {
            byte[] all = urgent.readUntilClosed(timeout);
            return all;
        }

        private boolean closed;

        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            background.close();
            urgent.close();
            pd.close();
        }
    }

    /** @return an unauthenticated JOIN of background channel 0 of 1 into {@code session}, with its preamble */
    static byte[] join(long session) {
        byte[] join = new byte[Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH];
        MemorySegment j = MemorySegment.ofArray(join);
        Wire.writePreamble(j, Wire.VERSION);
        new FrameHeader(j.asSlice(Wire.PREAMBLE_LENGTH, FrameHeader.LENGTH)).encode(FrameType.JOIN, 0, 1, session, 0, 0);
        return join;
    }

    @Override
    public RawStream open(String listenerUri) throws IOException {
        return new Plain(new RawQp(listenerUri, null, "raw"));
    }

    @Override
    public Session openSession(String listenerUri, List<RegionDescriptor> regions, boolean dataDigest, int maxPayload) throws IOException {
        return openSession(listenerUri, regions, dataDigest, maxPayload, 0x7e57_5e55_1011L, () -> { });
    }

    /** Runs between the HELLO and the background queue pair's connect request. */
    interface AfterHello {
        void run() throws IOException;
    }

    /** As above, as session {@code session}. */
    Session openSession(String listenerUri, List<RegionDescriptor> regions, boolean dataDigest, int maxPayload, long session, AfterHello afterHello)
            throws IOException {
        RdmaEndpoint probe = fabric.resolve("127.0.0.1", 1, TimeUnit.SECONDS.toNanos(1));
        ProtectionDomain pd = probe.device().allocPd();
        probe.close();
        RawQp urgent = new RawQp(listenerUri, pd, "raw-urgent", new Protocol.ConnectRequest(true, session).encode());
        byte[] hello = TransportTck.helloBytes(regions, Wire.VERSION, dataDigest, maxPayload, session);
        byte[] setup = new byte[FrameHeader.LENGTH + Protocol.Setup.LENGTH];
        MemorySegment s = MemorySegment.ofArray(setup);
        new FrameHeader(s).encode(Protocol.RDMA_SETUP, 0, 0, 0, 0, Protocol.Setup.LENGTH);
        new Protocol.Setup(DEPTH).encode(s, FrameHeader.LENGTH);
        byte[] first = new byte[hello.length + setup.length];
        System.arraycopy(hello, 0, first, 0, hello.length);
        System.arraycopy(setup, 0, first, hello.length, setup.length);
        urgent.send(first);
        afterHello.run();
        RawQp bg = new RawQp(listenerUri, pd, "raw-background", Protocol.joinRequest(session));
        bg.send(join(session));
        byte[] answer = urgent.awaitFirst(Duration.ofSeconds(30));
        FrameHeader h = new FrameHeader(MemorySegment.ofArray(java.util.Arrays.copyOfRange(answer, Wire.PREAMBLE_LENGTH,
                Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH))).decode();
        if (h.type() != FrameType.HELLO_ACK) {
            throw new IOException("expected HELLO_ACK, got " + FrameType.name(h.type()) + ": "
                    + new String(answer, Wire.PREAMBLE_LENGTH + FrameHeader.LENGTH, h.payloadLength(), java.nio.charset.StandardCharsets.UTF_8));
        }
        int at = Wire.PREAMBLE_LENGTH + 2 * FrameHeader.LENGTH;
        MemorySegment copy = Arena.ofAuto().allocate(answer.length - at);
        MemorySegment.copy(answer, at, copy, ValueLayout.JAVA_BYTE, 0, answer.length - at);
        Protocol.Regions r = Protocol.Regions.decode(copy, 0, copy.byteSize(), regions, maxPayload);
        urgent.received.reset();
        return new Session(urgent, bg, pd, r, regions);
    }
}
