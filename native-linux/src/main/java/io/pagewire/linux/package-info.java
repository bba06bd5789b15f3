/**
 * The one native layer of the transports (Netty's {@code transport-native-unix-common} is the
 * model): sockets of every address family the transports use (TCP over IPv4/IPv6, unix domain
 * sockets with descriptor passing), file descriptors handed between processes, and per-thread
 * scheduling hints. Not part of the SPI: exported only to the transport modules.
 *
 * <h2>Invariants</h2>
 * {@link io.pagewire.linux.Libc} is the only class that touches {@code java.lang.foreign.Linker};
 * errno is captured per call into per-thread state. Every failure is an
 * {@link io.pagewire.linux.ErrnoException} naming the call, what it was doing and the errno.
 * The one system call number (sched_setattr, which glibc before 2.41 does not wrap) is chosen by
 * architecture in one place.
 *
 * <h2>Threading</h2>
 * A {@link io.pagewire.linux.NativeSocket} may be read by one thread and written by another;
 * {@code shutdown()} is safe from any thread and wakes both; {@code close()} only after its users stopped.
 */
package io.pagewire.linux;
