/**
 * The Aeron transport: {@code aeron:udp?endpoint=host:port} and {@code aeron:ipc}, the pagewire wire format carried
 * in Aeron messages ({@code docs/aeron.md}).
 *
 * <h2>Design</h2>
 * A connection is three Aeron streams, each an exclusive publication with its own log buffer: urgent source to
 * destination, urgent destination to source (which first carries the handshake answer), and the background page
 * stream. The handshake ({@link io.pagewire.transport.aeron.Handshake}) goes through the listener's rendezvous
 * stream; every connection then gets streams (and UDP ports) of its own.
 * <ul>
 * <li><b>Urgent path.</b> One media driver serves its publications in turn from one sender thread, and one
 *     receiver thread reads every socket, so urgent traffic sharing a driver with the page stream waits behind
 *     it. The urgent streams therefore run in a media driver of their own (embedded; short idle back-off; normal
 *     priority), the page stream in another (its thread niced), and each side polls the urgent stream on a thread
 *     of its own. The background publication's window ({@code pub-wnd}) bounds what can queue ahead in the page
 *     stream, but no urgent message is ever behind it.</li>
 * <li><b>Pages without an intermediate copy.</b> The source claims a range of the background log buffer and copies
 *     the pages from guest RAM straight into it (the MTU is chosen so a batch of pages and its header fit one
 *     datagram); the destination copies them from Aeron's term buffer straight into its RAM, after validation.</li>
 * <li><b>Flow control and back pressure.</b> Aeron's receiver window paces the sender; a full publication window
 *     makes {@code offerPages} return {@code BACK_PRESSURED}. Blocking sends retry with an idle strategy, bounded by
 *     the connection's failure detection and the stall timeout; {@code NOT_CONNECTED}, {@code CLOSED}, an image
 *     that ends, and silence beyond the peer timeout fail the connection on both sides.</li>
 * </ul>
 *
 * <h2>Invariants</h2>
 * <ul>
 * <li>Nothing received is written to RAM before its frame header has passed
 *     {@link io.pagewire.transport.spi.wire.FrameValidator} against the negotiated layout.</li>
 * <li>Every handshake message is bounded ({@code Handshake.MAX_CONNECT_LENGTH}); every queue of the listener is
 *     bounded; the background lane holds at most {@code pub-wnd} plus one message of offered, unsent data.</li>
 * <li>Answers go to the address a source's datagrams come from, never to one a message names.</li>
 * <li>Embedded driver directories are unique per driver and removed when it stops; those of dead processes are
 *     swept.</li>
 * </ul>
 *
 * <h2>Threading</h2>
 * Per connection: an urgent thread on both sides, and on the destination a background thread. The source's
 * background lane has one producer (the caller); urgent sends are serialised by a lock that background sends never
 * take. Per process: one thread per embedded driver and one Aeron client conductor thread per driver; the listener
 * has one thread. Handlers run on the urgent and background threads.
 */
package io.pagewire.transport.aeron;
