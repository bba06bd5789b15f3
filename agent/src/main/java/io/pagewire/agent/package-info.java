/**
 * The pagewire agent: joins the RAM tracker and a transport into a migration, and the {@code pagewire} command.
 *
 * <h2>Invariants</h2>
 * The source RAM is only read. A migration is reported {@code verified} only when the destination confirmed its copy
 * end to end; any failure leaves the source untouched and running.
 */
package io.pagewire.agent;
