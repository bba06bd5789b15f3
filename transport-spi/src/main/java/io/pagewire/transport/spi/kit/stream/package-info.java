/**
 * The kit's stream layer, shared by the transports over stream sockets (TCP, unix domain): the
 * connection ({@link io.pagewire.transport.spi.kit.stream.StreamConnection}: sender and receiver threads,
 * gathering writes straight from guest RAM, scattering reads straight into it), its bounded background
 * queue, the frame writer, the listener and the handshake. A stream transport adds how it dials and tunes
 * its sockets. Exported only to the transport modules.
 *
 * <h2>Threading</h2>
 * Each socket is read by one thread (destination background, both urgent) or written by one thread
 * (source background); application threads write the urgent socket under the kit's urgent lock.
 * Sockets are shut down to wake their threads and closed only after every thread ended.
 */
package io.pagewire.transport.spi.kit.stream;
