/**
 * Postcopy blocktime accounting on the destination (seed 000): per-vCPU blocked time and the
 * total downtime during which every vCPU waited for a page, in O(vCPUs + outstanding faults)
 * memory.
 *
 * <p>Threading: {@link io.pagewire.ramtracker.blocktime.BlocktimeTracker} is synchronized; the
 * fault reader and the page placers call it from their own threads.
 */
package io.pagewire.ramtracker.blocktime;
