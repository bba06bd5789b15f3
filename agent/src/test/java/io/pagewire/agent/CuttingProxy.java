package io.pagewire.agent;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP relay between a source and a destination that a test can cut: every relayed socket is
 * closed at once (both processes see their connections break, neither is killed), and, while
 * refusing, new connections are closed as soon as they arrive. Real sockets, in the test JVM.
 */
final class CuttingProxy implements AutoCloseable {
    private final ServerSocket server;
    private final InetSocketAddress upstream;
    private final List<Socket> open = new ArrayList<>();
    private final Thread acceptor;
    private final AtomicInteger accepted = new AtomicInteger();
    private volatile boolean refusing;
    private volatile boolean closed;

    CuttingProxy(String host, int port) throws IOException {
        this.upstream = new InetSocketAddress(host, port);
        this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        this.acceptor = Thread.ofPlatform().daemon().name("cutting-proxy-accept").start(this::acceptLoop);
    }

    /** @return the URI sources connect to */
    String uri() {
        return "tcp://127.0.0.1:" + server.getLocalPort();
    }

    /** @return sockets accepted so far (each migration connection has several) */
    int accepted() {
        return accepted.get();
    }

    /** Closes every relayed socket now. */
    void cut() {
        synchronized (open) {
            for (Socket s : open) {
                closeSocket(s);
            }
            open.clear();
        }
    }

    /** While refusing, new connections are closed at once. */
    void refuse(boolean refuse) {
        refusing = refuse;
    }

    private void acceptLoop() {
        while (!closed) {
            Socket in;
            try {
                in = server.accept();
            } catch (IOException e) {
                if (!closed) {
                    throw new IllegalStateException("proxy accept failed", e);
                }
                return;
            }
            accepted.incrementAndGet();
            if (refusing) {
                closeSocket(in);
                continue;
            }
            Socket out = new Socket();
            try {
                out.connect(upstream, 5000);
                in.setTcpNoDelay(true);
                out.setTcpNoDelay(true);
            } catch (IOException e) {
                closeSocket(in);
                closeSocket(out);
                continue; // the source sees its connection refused and tries again
            }
            synchronized (open) {
                open.add(in);
                open.add(out);
            }
            Thread.ofPlatform().daemon().name("cutting-proxy-up").start(() -> relay(in, out));
            Thread.ofPlatform().daemon().name("cutting-proxy-down").start(() -> relay(out, in));
        }
    }

    private static void relay(Socket from, Socket to) {
        byte[] buf = new byte[64 * 1024];
        try (InputStream i = from.getInputStream(); OutputStream o = to.getOutputStream()) {
            for (int n; (n = i.read(buf)) >= 0; ) {
                o.write(buf, 0, n);
            }
        } catch (SocketException e) {
            // cut(): the sockets were closed under us; that is the point
        } catch (IOException e) {
            throw new IllegalStateException("relay failed", e);
        } finally {
            closeSocket(from);
            closeSocket(to);
        }
    }

    private static void closeSocket(Socket s) {
        try {
            s.close();
        } catch (IOException e) {
            throw new IllegalStateException("closing a relayed socket failed", e);
        }
    }

    @Override
    public void close() throws IOException, InterruptedException {
        closed = true;
        server.close();
        cut();
        acceptor.join(5000);
    }
}
