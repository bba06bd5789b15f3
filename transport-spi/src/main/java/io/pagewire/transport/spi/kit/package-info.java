/**
 * The transport kit: the connection contract written once, so a transport adds only what its
 * medium needs. {@link io.pagewire.transport.spi.kit.KitConnection} owns state, the failure and its
 * {@link io.pagewire.transport.spi.kit.FailureOrigin}, completion, close and release, heartbeats and the peer
 * timeout, statistics and the urgent lane; {@link io.pagewire.transport.spi.kit.SourceLane} the source's
 * background lane rules; {@link io.pagewire.transport.spi.kit.FrameDispatcher} the way from a validated
 * frame to the handler; {@link io.pagewire.transport.spi.kit.SessionListener} and
 * {@link io.pagewire.transport.spi.kit.ReadyQueue} session admission; {@link io.pagewire.transport.spi.kit.Handshakes}
 * the handshake rules; {@link io.pagewire.transport.spi.kit.Authentication} and
 * {@link io.pagewire.transport.spi.kit.AuthExchange} the mutual authentication every transport runs before it
 * looks at a source's layout ({@link io.pagewire.transport.spi.kit.HandshakeGuard} stays for further policy).
 *
 * <h2>Invariants</h2>
 * <ul>
 * <li>The first failure wins; the peer and the handler hear of it as its origin says; {@code onError} at most
 *     once and never after completion; {@code onClosed} exactly once, last, after every thread ended and
 *     everything was released.</li>
 * <li>{@code failure()} is null while healthy and after a clean end; {@code isClosed()} is true after any end.</li>
 * <li>Nothing received reaches the handler before it was validated, nor after a failure.</li>
 * <li>One rule bounds page payloads: a power of two from the smallest page size to 16 MiB, at least every region's page size.</li>
 * <li>With credentials configured, a listener looks at a source's layout, answers HELLO_ACK or admits a JOIN only
 *     after the source proved itself; a JOIN must carry its session's MAC.</li>
 * </ul>
 *
 * <h2>Threading</h2>
 * A connection's threads are registered before {@code open()} and start after the handler's {@code onOpen}. The
 * urgent lane is serialised by one lock; the source background lane has one producer; a dispatcher belongs to
 * one receiving thread. {@code fail}, {@code close} and {@code abort} may be called from any thread, also a handler.
 */
package io.pagewire.transport.spi.kit;
