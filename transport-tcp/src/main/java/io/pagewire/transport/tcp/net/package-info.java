/**
 * Sockets through Panama: {@link io.pagewire.transport.tcp.net.NativeSocket} is the intent-level API; the
 * package-private {@code Libc} mirrors the C calls. errno is captured per call into per-thread state.
 *
 * <h2>Threading</h2>
 * One thread may send while another receives. {@code shutdown()} wakes both from any thread; {@code close()}
 * releases the descriptor and must come after the socket's threads stopped.
 */
package io.pagewire.transport.tcp.net;
