/**
 * The TCP transport: what TCP adds to the kit's stream layer ({@code io.pagewire.transport.spi.kit.stream}).
 *
 * <h2>Design</h2>
 * One urgent connection (TCP_NODELAY, DSCP EF, SO_PRIORITY) and N background connections (like QEMU's multifd)
 * fed from one bounded queue of batch descriptors; keepalive and TCP_USER_TIMEOUT on every socket,
 * TCP_NOTSENT_LOWAT and optional kernel pacing (SO_MAX_PACING_RATE) on background sockets so a slow link keeps
 * short queues; or, with {@code urgent-channel=shared}, no urgent connection (for comparison).
 * Everything else (lifecycle, failure, dispatch, admission, framing) is the kit's.
 *
 * <h2>Threading</h2>
 * As the stream layer: one thread per socket; application threads write the urgent socket under the kit's lock.
 */
package io.pagewire.transport.tcp;
