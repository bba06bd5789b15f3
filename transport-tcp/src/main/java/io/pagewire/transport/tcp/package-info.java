/**
 * The TCP transport.
 *
 * <h2>Design</h2>
 * One urgent connection (TCP_NODELAY, DSCP EF, its own receive thread; application threads write it under a lock,
 * so nothing is ever queued ahead of an urgent message) and N background connections fed from one bounded queue of
 * batch descriptors ({@link io.pagewire.transport.tcp.BackgroundQueue}): an idle channel takes the next batch, as
 * QEMU's multifd does. Each frame goes out with one gathering {@code sendmsg}: header, pages straight from guest RAM
 * (or a checksummed staging copy when data digests are on), digest. The destination reads each header, validates it,
 * and receives the payload straight into the destination RAM.
 *
 * <h2>Threading and ownership</h2>
 * Each socket is owned by the thread that reads it (or, for source background sockets, writes it); that thread
 * closes it when it ends. Failure shuts every socket down first, which wakes every blocked call.
 */
package io.pagewire.transport.tcp;
