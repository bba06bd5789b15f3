/**
 * The transport SPI: what every pagewire transport provides and every caller may rely on.
 *
 * <h2>Invariants</h2>
 * <ul>
 * <li>A transport is chosen by URI scheme ({@link io.pagewire.transport.spi.Transports}); unknown schemes and
 *     options are refused naming what is accepted.</li>
 * <li>Pages, not bytes: the source passes (region, first page, count) references into its RAM; the
 *     destination's transport writes into the destination region (or its {@link io.pagewire.transport.spi.PagePlacer}).
 *     Nothing received is written before it has been validated against the negotiated
 *     {@link io.pagewire.transport.spi.RamLayout}.</li>
 * <li>Two lanes per connection: an urgent message never waits behind background data already queued.</li>
 * <li>Bounded memory: offers beyond the background bound return {@link io.pagewire.transport.spi.Lane#BACK_PRESSURED}
 *     (or block, for {@code send}); no queue grows without bound.</li>
 * <li>Failures surface on both sides within the peer timeout, as {@code onError} and as exceptions from sends;
 *     never as missing pages. Completion is acknowledged end to end.</li>
 * </ul>
 *
 * <h2>Threading</h2>
 * Handlers are called on transport threads (see {@link io.pagewire.transport.spi.MessageHandler}). The background
 * lane has one producer at a time; the urgent lane is thread-safe. {@code close()} may be called from any thread,
 * also from a handler.
 */
package io.pagewire.transport.spi;
