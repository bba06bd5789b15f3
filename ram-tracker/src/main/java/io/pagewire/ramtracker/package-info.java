/**
 * Guest RAM as named regions: {@link io.pagewire.ramtracker.GuestRam} holds
 * {@link io.pagewire.ramtracker.GuestRegion}s (memfd, file on tmpfs/hugetlbfs, or anonymous
 * memory), each a {@link java.lang.foreign.MemorySegment} in one long-lived shared arena.
 *
 * <p>Invariants: page indices are {@code long} and run from 0 to {@code pageCount - 1}; every
 * page range is bounds-checked against its region and the message names the region; a region's
 * memory stays mapped until its {@code GuestRam} closes. Regions are safe to use from any
 * thread; {@code GuestRam.close()} only once nothing uses the memory.
 *
 * <p>Subpackages: {@code bitmap} (dirty bitmaps), {@code dirty} (dirty-log sources),
 * {@code scan} (zero and balloon skipping, run classification), {@code blocktime} (postcopy
 * blocktime), {@code linux} (the intent-level native layer).
 */
package io.pagewire.ramtracker;
