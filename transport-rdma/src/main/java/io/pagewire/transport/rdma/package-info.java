/**
 * The RDMA transport, {@code rdma://host:port}: one-sided RDMA WRITE of pages straight from the
 * source's RAM into the destination's registered RAM, a SEND per batch saying what landed, an
 * urgent queue pair of its own. See {@code docs/rdma.md}.
 *
 * <h2>Invariants</h2>
 * <ul>
 * <li>Nothing is reported as placed that did not land: a batch's frames travel in a SEND posted after
 *     its RDMA WRITEs on the same RC queue pair, and the destination checks every frame against the
 *     negotiated layout (region, range, counts, digest) before calling {@code onPages}.</li>
 * <li>Nothing from the peer writes outside destination RAM: the NIC only places RDMA WRITEs inside
 *     registrations of destination RAM (or its staging slots), receive buffers are not remote-writable,
 *     and the source's RAM is never remote-accessible. With pin-all the whole destination RAM is
 *     writable by the connected source; on demand only the chunks it asked for, at most
 *     {@code reg-cache-chunks} at once.</li>
 * <li>Bounded memory: receive buffers and send buffers per queue pair, a bounded background queue of
 *     descriptors, a bounded registration cache on each side, a bounded stash of undispatched
 *     messages (one per receive buffer).</li>
 * <li>Credits: no SEND is posted without a receive posted for it at the peer (see {@code Channel}).</li>
 * <li>Every failure (completion error, flush, remote access error, protocol violation, peer timeout)
 *     fails the connection on both sides: ERROR on the urgent queue pair when possible, then disconnect.</li>
 * </ul>
 *
 * <h2>Threading</h2>
 * Per connection: one poller thread per queue pair (it also runs the handler's callbacks for that
 * lane, so a blocking handler applies back pressure through credits), and on the source one sender
 * thread for the background lane. Application threads post urgent messages themselves, one at a time.
 * {@code close()} may be called from any thread, also from a handler.
 */
package io.pagewire.transport.rdma;
