/**
 * The pagewire wire format for byte-stream transports, version 1 ({@code docs/wire-protocol.md}).
 *
 * <h2>Invariants</h2>
 * Every header is CRC-checked by {@link io.pagewire.transport.spi.wire.FrameHeader#decode()} and then
 * validated by {@link io.pagewire.transport.spi.wire.FrameValidator} before any payload byte is read; every
 * error names the offending value and its bound. {@link io.pagewire.transport.spi.wire.Hello#decode} accepts
 * untrusted bytes and fails only with {@link io.pagewire.transport.spi.wire.WireException}.
 *
 * <h2>Threading</h2>
 * {@code FrameHeader} is a reusable flyweight: one per thread. {@code FrameValidator} is immutable.
 */
package io.pagewire.transport.spi.wire;
