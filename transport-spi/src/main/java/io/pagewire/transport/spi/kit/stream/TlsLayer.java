package io.pagewire.transport.spi.kit.stream;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.linux.NativeSocket;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSession;
import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * TLS 1.3 on a {@link NativeSocket}: the JDK's {@link SSLEngine} between the stream layer and the
 * socket ({@code tls=on}). The kernel here has no kTLS, so every byte is copied: page data is
 * encrypted from guest RAM into an outbound buffer of records, sent, received into an inbound
 * buffer and decrypted straight into its place in destination RAM when at least one whole record
 * fits there (else through a small plaintext buffer).
 *
 * <h2>Handshake</h2>
 * {@link #client} and {@link #server} run the TLS handshake on a fresh socket, blocking, by a
 * deadline, and install the layer ({@link NativeSocket#secure}); everything after, the preamble,
 * HELLO, AUTH, JOIN and every frame, travels in TLS records. Both sides present a certificate
 * (mutual TLS: the server demands the client's) chaining to the configured CA. Identities
 * ({@code tls-authz}) are checked by the kit's own handshake inside the TLS session.
 *
 * <h2>Threading</h2>
 * As the socket's: one thread sends (under the send lock) while another receives (under the receive
 * lock); {@link SSLEngine#wrap} and {@link SSLEngine#unwrap} may run at the same time. A receiver
 * that must answer the peer (a TLS 1.3 KeyUpdate asking for one back) wraps under the send lock.
 *
 * <h2>End of stream</h2>
 * A connection that ends in order (the migration completed) sends close_notify on each socket before
 * shutting it down ({@link #closeOutbound}). A TLS stream whose socket ends without the peer's
 * close_notify was cut (by the network, an attacker, or a peer that died): reads fail with
 * {@link TruncatedException} instead of seeing an end of stream, which the connection reports as an
 * error unless the migration had already completed by its own protocol.
 *
 * <h2>Memory</h2>
 * Per socket: an inbound and an outbound buffer of {@link #BUFFER_RECORDS} TLS records and one
 * plaintext record, about 200 KiB, allocated at connect or accept (bounded by the handshake slots).
 */
public final class TlsLayer implements NativeSocket.Layer {
    /** The content type of a TLS handshake record: the first byte a TLS client sends. */
    private static final byte HANDSHAKE_RECORD = 22;

    /** The peer's first bytes are not TLS (a source without {@code tls=on}): no alert was sent, a plain answer may follow. */
    public static final class NotTlsException extends SSLException {
        NotTlsException(String message) {
            super(message);
        }
    }

    /** The peer's bytes ended without its close_notify: the TLS stream was cut, not closed. */
    public static final class TruncatedException extends EOFException {
        TruncatedException(String message) {
            super(message);
        }
    }

    /** How long an orderly end waits to send close_notify (a sender blocked on a full socket: skipped). */
    private static final long CLOSE_NOTIFY_MS = 1000;

    /** Records buffered each way: larger sends and receives per system call. */
    static final int BUFFER_RECORDS = 4;

    private final NativeSocket socket;
    private final SSLEngine engine;
    private final String peer;
    private final ReentrantLock sendLock = new ReentrantLock();
    private final ReentrantLock receiveLock = new ReentrantLock();
    private final int packetBytes;
    private final int recordBytes;
    /** Ciphertext to send: write mode, flushed before each call returns (send lock). */
    private final ByteBuffer netOut;
    private final MemorySegment netOutSegment;
    /** Ciphertext received, not yet decrypted: read mode between calls (receive lock). */
    private final ByteBuffer netIn;
    private final MemorySegment netInSegment;
    /** Plaintext decrypted, not yet handed out: read mode between calls (receive lock). */
    private final ByteBuffer appIn;
    private final MemorySegment appInSegment;
    private static final ByteBuffer NOTHING = ByteBuffer.allocate(0);
    private static final ByteBuffer[] NO_DATA = {NOTHING};
    /** The peer closed the socket (or its TLS session): set by the receiver. */
    private boolean ended;

    private TlsLayer(NativeSocket socket, SSLEngine engine, String peer) {
        this.socket = socket;
        this.engine = engine;
        this.peer = peer;
        SSLSession s = engine.getSession();
        this.packetBytes = s.getPacketBufferSize();
        this.recordBytes = s.getApplicationBufferSize();
        this.netOut = ByteBuffer.allocateDirect(BUFFER_RECORDS * packetBytes);
        this.netOutSegment = MemorySegment.ofBuffer(netOut);
        this.netIn = ByteBuffer.allocateDirect(BUFFER_RECORDS * packetBytes);
        this.netInSegment = MemorySegment.ofBuffer(netIn); // the whole buffer: taken before the flip below
        this.appIn = ByteBuffer.allocateDirect(recordBytes);
        this.appInSegment = MemorySegment.ofBuffer(appIn);
        netIn.flip();
        appIn.flip();
    }

    /**
     * The source's end: runs the TLS handshake as the client on {@code s} and installs the layer.
     *
     * @param uri the destination's URI, for messages
     * @throws TransportException {@code HANDSHAKE} when TLS fails (the destination's certificate is not trusted,
     *         the destination refused this side's, or it does not speak TLS)
     */
    public static void client(NativeSocket s, SSLContext context, String uri, long timeoutMs) throws IOException {
        SSLEngine e = context.createSSLEngine();
        e.setUseClientMode(true);
        e.setEnabledProtocols(new String[]{"TLSv1.3"});
        TlsLayer t = new TlsLayer(s, e, "the destination " + uri);
        try {
            t.handshake(System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs));
        } catch (SSLException x) {
            throw new TransportException(Kind.HANDSHAKE, "TLS handshake with the destination " + uri + " failed: " + x.getMessage()
                    + " (tls=on: the destination must listen with tls=on and present a certificate of this side's CA, and accept"
                    + " this side's certificate)", x);
        }
        s.secure(t);
    }

    /**
     * The destination's end: runs the TLS handshake as the server on an accepted {@code s}, demanding the
     * source's certificate, by {@code deadlineNs}, and installs the layer.
     *
     * @throws SSLException when TLS fails (the caller logs why and tells the source tersely)
     */
    public static void server(NativeSocket s, SSLContext context, String peer, long deadlineNs) throws IOException {
        SSLEngine e = context.createSSLEngine();
        e.setUseClientMode(false);
        e.setNeedClientAuth(true);
        e.setEnabledProtocols(new String[]{"TLSv1.3"});
        TlsLayer t = new TlsLayer(s, e, "the source " + peer);
        t.handshake(deadlineNs);
        s.secure(t);
    }

    /** @return the negotiated protocol and cipher suite, for messages and tests */
    public String cipherSuite() {
        return engine.getSession().getProtocol() + " " + engine.getSession().getCipherSuite();
    }

    // ================================================================== handshake

    private void handshake(long deadlineNs) throws IOException {
        engine.beginHandshake();
        receiveLock.lock();
        sendLock.lock();
        try {
            while (true) {
                SSLEngineResult.HandshakeStatus hs = engine.getHandshakeStatus();
                switch (hs) {
                    case NEED_WRAP -> wrapAndFlush(NO_DATA);
                    case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                        if (netIn.hasRemaining() && netIn.get(netIn.position()) != HANDSHAKE_RECORD && !engine.getUseClientMode()
                                && engine.getHandshakeSession() == null) {
                            // Not even a TLS record where the ClientHello belongs: a peer in clear, told so in clear (no alert).
                            throw new NotTlsException(peer + " does not speak TLS (its first byte is 0x"
                                    + Integer.toHexString(netIn.get(netIn.position()) & 0xff) + ", not a TLS handshake record)");
                        }
                        appIn.compact();
                        SSLEngineResult r;
                        try {
                            r = engine.unwrap(netIn, appIn);
                        } finally {
                            appIn.flip();
                        }
                        if (r.getStatus() == SSLEngineResult.Status.BUFFER_UNDERFLOW && !fill(deadlineNs)) {
                            throw new EOFException(peer + " closed the connection during the TLS handshake");
                        }
                        if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                            throw new SSLException(peer + " closed the TLS session during its handshake");
                        }
                    }
                    case NEED_TASK -> runTasks();
                    case FINISHED, NOT_HANDSHAKING -> {
                        return;
                    }
                }
            }
        } catch (NotTlsException x) {
            throw x;
        } catch (SSLException x) {
            sendAlert(x);
            throw x;
        } finally {
            sendLock.unlock();
            receiveLock.unlock();
        }
    }

    /** After a failed handshake the engine holds the alert that says why: send it, briefly, so the peer reads the reason. */
    private void sendAlert(SSLException cause) {
        try {
            socket.sendTimeoutMs(1000);
            netOut.clear();
            for (int i = 0; i < 4 && !engine.isOutboundDone(); i++) {
                engine.wrap(NO_DATA, netOut);
            }
            if (netOut.position() > 0) {
                socket.rawSendFully(netOutSegment, 0, netOut.position());
            }
        } catch (IOException | RuntimeException e) {
            cause.addSuppressed(e);
        }
    }

    private void runTasks() {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null) {
            task.run();
        }
    }

    /**
     * Reads what has arrived into {@link #netIn} (waiting until {@code deadlineNs}; 0: as the socket's timeout says).
     *
     * @return false when the peer closed
     * @throws TransportException {@code HANDSHAKE} when the deadline passed first
     */
    private boolean fill(long deadlineNs) throws IOException {
        if (deadlineNs != 0) {
            long left = deadlineNs - System.nanoTime();
            if (left <= 0 || !socket.rawPollReadable(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)))) {
                throw new TransportException(Kind.HANDSHAKE, "the TLS handshake with " + peer + " did not complete in time");
            }
        }
        netIn.compact(); // write mode
        try {
            if (!netIn.hasRemaining()) {
                throw new SSLException("a TLS record from " + peer + " is larger than " + netIn.capacity() + " bytes");
            }
            long n = socket.rawRecvSome(netInSegment, netIn.position(), netIn.remaining());
            if (n == 0) {
                return false;
            }
            netIn.position(netIn.position() + (int) n);
            return true;
        } finally {
            netIn.flip();
        }
    }

    // ================================================================== send

    /** Encrypts {@code src} into records and sends them; loops until all went out. Send lock held. */
    private void wrapAndFlush(ByteBuffer[] src) throws IOException {
        do {
            netOut.clear();
            while (netOut.remaining() >= packetBytes) {
                SSLEngineResult r = engine.wrap(src, netOut);
                if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                    throw new SSLException("the TLS session with " + peer + " is closed");
                }
                if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                    runTasks();
                }
                if (!remaining(src) || r.bytesProduced() == 0) {
                    break;
                }
            }
            if (netOut.position() == 0 && remaining(src)) {
                throw new SSLException("the TLS engine for " + peer + " takes no more data (handshake status "
                        + engine.getHandshakeStatus() + ")");
            }
            if (netOut.position() > 0) {
                socket.rawSendFully(netOutSegment, 0, netOut.position());
            }
        } while (remaining(src));
    }

    private static boolean remaining(ByteBuffer[] src) {
        for (ByteBuffer b : src) {
            if (b.hasRemaining()) {
                return true;
            }
        }
        return false;
    }

    @Override
    public void sendFully(MemorySegment data, long offset, long length) throws IOException {
        send(new ByteBuffer[]{data.asSlice(offset, length).asByteBuffer()});
    }

    @Override
    public void sendv(MemorySegment iov, int count, long totalBytes) throws IOException {
        ByteBuffer[] src = new ByteBuffer[count];
        for (int i = 0; i < count; i++) {
            src[i] = MemorySegment.ofAddress(NativeSocket.iovecBase(iov, i)).reinterpret(NativeSocket.iovecLength(iov, i)).asByteBuffer();
        }
        send(src);
    }

    private void send(ByteBuffer[] src) throws IOException {
        sendLock.lock();
        try {
            wrapAndFlush(src);
        } finally {
            sendLock.unlock();
        }
    }

    // ================================================================== receive (receive lock)

    /**
     * Decrypts the next record(s) from what has arrived into {@code dst}, reading more when a record is incomplete.
     *
     * @param block whether to read from the socket (blocking per its timeout) when no whole record is buffered
     * @return plaintext bytes put into {@code dst}; 0 when nothing (not blocking, or a record without data); -1 at the end
     */
    private int decrypt(ByteBuffer dst, boolean block) throws IOException {
        while (true) {
            if (ended) {
                if (!engine.isInboundDone()) {
                    throw new TruncatedException("the TLS stream from " + peer + " ended without close_notify: it was cut (by the network,"
                            + " an attacker, or a peer that died), not closed");
                }
                return -1;
            }
            if (netIn.hasRemaining()) {
                SSLEngineResult r;
                try {
                    r = engine.unwrap(netIn, dst);
                } catch (SSLException x) {
                    throw new SSLException("TLS from " + peer + " failed: " + x.getMessage(), x);
                }
                switch (r.getStatus()) {
                    case OK -> {
                        answerIfAsked(r);
                        if (r.bytesProduced() > 0) {
                            return r.bytesProduced();
                        }
                        continue; // a record without application data (a session ticket, a KeyUpdate)
                    }
                    case CLOSED -> {
                        ended = true;
                        return -1;
                    }
                    case BUFFER_OVERFLOW -> throw new IllegalStateException("TLS record larger than the " + dst.remaining()
                            + "-byte plaintext room (expected at most " + recordBytes + ")");
                    case BUFFER_UNDERFLOW -> {
                        // fall through: read more
                    }
                }
            }
            if (!block) {
                return 0;
            }
            if (!fill(0)) {
                ended = true; // the loop's top tells an end after close_notify from a cut
            }
        }
    }

    /** A record that asks for an answer (TLS 1.3 KeyUpdate with update_requested): wrap it now. */
    private void answerIfAsked(SSLEngineResult r) throws IOException {
        SSLEngineResult.HandshakeStatus hs = r.getHandshakeStatus();
        if (hs == SSLEngineResult.HandshakeStatus.NEED_TASK) {
            runTasks();
            hs = engine.getHandshakeStatus();
        }
        if (hs == SSLEngineResult.HandshakeStatus.NEED_WRAP) {
            send(NO_DATA);
        }
    }

    /** Fills {@link #appIn} with the next plaintext. @return false at the end of the stream */
    private boolean refill(boolean block) throws IOException {
        appIn.clear();
        try {
            while (true) {
                int n = decrypt(appIn, block);
                if (n != 0) {
                    return n > 0;
                }
                if (!block) {
                    return true;
                }
            }
        } finally {
            appIn.flip();
        }
    }

    private int takeBuffered(MemorySegment dst, long offset, long length) {
        int n = (int) Math.min(appIn.remaining(), length);
        MemorySegment.copy(appInSegment, appIn.position(), dst, offset, n);
        appIn.position(appIn.position() + n);
        return n;
    }

    @Override
    public long recvFully(MemorySegment dst, long offset, long length) throws IOException {
        receiveLock.lock();
        try {
            long done = 0;
            while (done < length) {
                if (appIn.hasRemaining()) {
                    done += takeBuffered(dst, offset + done, length - done);
                    continue;
                }
                long left = length - done;
                int n;
                if (left >= recordBytes) {
                    // At least one whole record fits: decrypt straight into place.
                    n = decrypt(dst.asSlice(offset + done, left).asByteBuffer(), true);
                } else {
                    n = refill(true) ? 0 : -1;
                }
                if (n < 0) {
                    if (done == 0) {
                        return -1;
                    }
                    throw new EOFException("connection closed by " + peer + " after " + done + " of " + length + " bytes");
                }
                done += n;
            }
            return done;
        } finally {
            receiveLock.unlock();
        }
    }

    @Override
    public void recvv(MemorySegment iov, int count, long totalBytes) throws IOException {
        long done = 0;
        for (int i = 0; i < count; i++) {
            long len = NativeSocket.iovecLength(iov, i);
            MemorySegment part = MemorySegment.ofAddress(NativeSocket.iovecBase(iov, i)).reinterpret(len);
            if (recvFully(part, 0, len) < 0 && len > 0) {
                throw new EOFException("connection closed by " + peer + " with " + (totalBytes - done) + " of " + totalBytes
                        + " bytes still to come");
            }
            done += len;
        }
    }

    @Override
    public long recvSome(MemorySegment dst, long offset, long length) throws IOException {
        receiveLock.lock();
        try {
            if (!appIn.hasRemaining() && !refill(true)) {
                return 0;
            }
            return takeBuffered(dst, offset, length);
        } finally {
            receiveLock.unlock();
        }
    }

    @Override
    public boolean pollReadable(long timeoutMs) throws IOException {
        receiveLock.lock();
        try {
            long deadline = timeoutMs < 0 ? Long.MAX_VALUE : System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (true) {
                if (appIn.hasRemaining() || ended) {
                    return true;
                }
                // Whole records already here first: the socket may have nothing more to say.
                if (!refill(false) || appIn.hasRemaining()) {
                    return true;
                }
                long wait = timeoutMs < 0 ? -1 : Math.max(0, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()));
                if (!socket.rawPollReadable(wait)) {
                    return false;
                }
                if (!fill(0)) {
                    ended = true;
                    return true; // the caller's receive sees the end
                }
            }
        } finally {
            receiveLock.unlock();
        }
    }

    /**
     * Sends close_notify (once): this side sends nothing more. A sender that holds the send lock longer than
     * {@link #CLOSE_NOTIFY_MS} (blocked on a full socket: not an orderly end) is not waited for; the peer then
     * sees a cut stream.
     */
    @Override
    public void closeOutbound() throws IOException {
        try {
            if (!sendLock.tryLock(CLOSE_NOTIFY_MS, TimeUnit.MILLISECONDS)) {
                throw new IOException("close_notify to " + peer + " not sent: a send is still blocked after " + CLOSE_NOTIFY_MS + " ms");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted before sending close_notify to " + peer);
        }
        try {
            if (engine.isOutboundDone()) {
                return;
            }
            engine.closeOutbound();
            socket.sendTimeoutMs(CLOSE_NOTIFY_MS);
            netOut.clear();
            while (!engine.isOutboundDone()) {
                SSLEngineResult r = engine.wrap(NO_DATA, netOut);
                if (r.bytesProduced() == 0) {
                    break;
                }
            }
            if (netOut.position() > 0) {
                socket.rawSendFully(netOutSegment, 0, netOut.position());
            }
        } finally {
            sendLock.unlock();
        }
    }

    @Override
    public String toString() {
        return "TlsLayer[" + socket + ", " + peer + "]";
    }
}
