package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Arrays;

/**
 * The destination's rule "a page at most once per round on the background lane": one bit per page,
 * claimed atomically by the background stream whose frame names the page, before any byte of the
 * frame's payload lands, and cleared at each round-end barrier (when every stream is held there).
 *
 * <p>Why: background streams place pages concurrently. Were the same page allowed on two streams in
 * one round, one stream's digest would be computed over bytes another stream had just placed, a
 * false corruption report, and which copy stays would be a race. With the rule, a duplicate is
 * refused by name before it is read. The urgent lane (postcopy answers) is not claimed: its
 * placement is claim-once in the application.
 *
 * <p>Thread-safe: claims from several streams at once (atomic OR on 64-bit words); {@link #clear()}
 * only while no stream claims (at a barrier). Memory: one bit per page of the layout.
 */
final class RoundClaims {
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private final long[][] bits;
    private final long[] pages;
    private final String[] names;

    RoundClaims(RamLayout layout) {
        int n = layout.regionCount();
        bits = new long[n][];
        pages = new long[n];
        names = new String[n];
        for (int r = 0; r < n; r++) {
            pages[r] = layout.region(r).pageCount();
            names[r] = layout.region(r).name();
            bits[r] = new long[(int) ((pages[r] + 63) >>> 6)];
        }
    }

    /**
     * Claims pages {@code [first, first + count)} of a region (already validated to lie inside it).
     *
     * @param type the frame type, for the message
     * @param stream the background stream, for the message
     * @throws WireException naming the first page already claimed in this round
     */
    void claim(int type, int regionId, long first, long count, int stream) {
        long[] b = bits[regionId];
        long end = first + count;
        long p = first;
        while (p < end) {
            int w = (int) (p >>> 6);
            int lo = (int) (p & 63);
            int hi = (int) Math.min(64, lo + (end - p));
            long mask = hi == 64 ? -1L << lo : ((1L << hi) - 1) & (-1L << lo);
            long old = (long) WORD.getAndBitwiseOr(b, w, mask);
            if ((old & mask) != 0) {
                long dup = ((long) w << 6) + Long.numberOfTrailingZeros(old & mask);
                throw new WireException("invalid " + FrameType.name(type) + " frame on background stream " + stream + ": page " + dup
                        + " of region " + regionId + " '" + names[regionId] + "' was already sent in this round (a page may appear"
                        + " at most once per round on the background lane)");
            }
            p = ((long) w << 6) + hi;
        }
    }

    /** Forgets every claim: a new round begins. Only while no stream claims. */
    void clear() {
        for (long[] b : bits) {
            Arrays.fill(b, 0L);
        }
        VarHandle.fullFence(); // the streams released by the barrier see the cleared words
    }
}
