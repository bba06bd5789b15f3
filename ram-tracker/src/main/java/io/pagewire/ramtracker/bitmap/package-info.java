/**
 * Dirty bitmaps, one bit per page in 64-bit words (seed 001), and the sync of KVM-format dirty
 * logs into them: a word at a time when the log's page offset is 64-aligned, shifting and
 * merging words when it is not. One bitmap per client ({@link io.pagewire.ramtracker.bitmap.DirtyClient}).
 *
 * <p>Invariants: bit {@code p % 64} of word {@code p / 64} is page {@code p}; bits past the last
 * page stay clear; indices are {@code long}.
 *
 * <p>Threading: queries from any thread; marking operations from one thread at a time per
 * bitmap, concurrently with atomic taking operations on other threads (a mark is never lost, a
 * concurrently taken bit may come back: a page is sent twice, never missed); atomic operations
 * from any thread. See {@link io.pagewire.ramtracker.bitmap.DirtyBitmap}.
 */
package io.pagewire.ramtracker.bitmap;
