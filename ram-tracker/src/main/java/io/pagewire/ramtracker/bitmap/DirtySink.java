package io.pagewire.ramtracker.bitmap;

import java.lang.foreign.MemorySegment;

/**
 * Where a dirty-log source delivers dirty pages: one {@link DirtyBitmap}, or every client's
 * bitmap at once ({@link DirtyClients}). Page indices are region page indices.
 *
 * <p>Threading: the methods are marking operations (see {@link DirtyBitmap}): one marking
 * thread at a time per sink.
 */
public interface DirtySink {

    /** @return the number of pages the sink covers */
    long pageCount();

    /**
     * Marks pages {@code [firstPage, firstPage + count)} dirty.
     *
     * @param firstPage first page
     * @param count pages
     */
    void markRange(long firstPage, long count);

    /**
     * Merges a dirty log in {@code KVM_GET_DIRTY_LOG} format (little-endian 64-bit words, bit
     * {@code b} of the log = bit {@code b % 64} of word {@code b / 64}): log bits
     * {@code [logFirstBit, logFirstBit + count)} mark pages {@code [firstPage, firstPage + count)}.
     * Works a whole word (64 pages) at a time when {@code firstPage - logFirstBit} is a multiple
     * of 64, shifting and merging words when it is not.
     *
     * @param log the log; must hold the whole 64-bit words that contain the bits read
     * @param logFirstBit first log bit to merge
     * @param firstPage the page that log bit {@code logFirstBit} stands for
     * @param count bits (pages) to merge
     * @return the pages that became dirty (were clean before); for a fan-out, in its first bitmap
     */
    long syncFrom(MemorySegment log, long logFirstBit, long firstPage, long count);
}
