package io.pagewire.agent;

import io.pagewire.transport.spi.PeerText;

/**
 * The agent's control messages, carried as CONTROL frames on the urgent lane (UTF-8 text).
 * <pre>
 *   verification (see docs/migration.md): CRC32C of every region's bytes, never-populated runs computed, not read
 *   source -> destination  "verify-final REGION FIRST_WORD\n" + words   background lane, after the last round end
 *                          before the final round (guest paused): bit c set = checksum chunk c (RamChecksum.CHUNK_BYTES)
 *                          is written by the final round; every other chunk is final, the destination checksums it now
 *   source -> destination  "verify-begin"           after the acknowledgement: the destination checksums the rest
 *   source -> destination  "verify-progress DONE TOTAL"   while the source checksums (bytes, decimal), every ~0.5 s
 *   source -> destination  "verify CRC0 CRC1 ..."   then: CRC32C of every region, in hex
 *   destination -> source  "verify-progress DONE TOTAL"   while the destination checksums, every ~0.5 s; the source
 *                          waits for the verdict as long as DONE grows (MigrationConfig.verifyStallTimeoutNs)
 *   destination -> source  "verified" | "mismatch: ..." | "unverified: ..." (the destination could not checksum)
 *   source -> destination  "done"                   after completion, without verification
 *   source -> destination  postcopy: "postcopy-discard ...", "postcopy-start" (background lane, between round ends);
 *   destination -> source  "postcopy-running", then "postcopy-stats {...}" before acknowledging completion
 *   source -> destination  "populate REGION CHUNK_PAGES FIRST_CHUNK HEX"  after the handshake: which chunks of
 *                          CHUNK_PAGES pages hold data at the source (bit i of the hex bytes, least significant
 *                          bit first, is chunk FIRST_CHUNK + i), so the destination populates only those, in order
 *   source -> destination  "session ID"             after the handshake: this migration's random id (hex)
 *
 *   postcopy recovery, over a new connection after the old one broke (QEMU's postcopy recovery):
 *   source -> destination  "postcopy-recover ID"     resume migration ID; nothing else is sent before the answer
 *   destination -> source  "postcopy-resume REGION FIRST_WORD\n" + words   the received bitmap: pages the destination
 *                          holds (little-endian u64 words, as discards); the source sends only the others again
 *   destination -> source  "postcopy-resume-end"     bitmap complete; page requests of faults still waiting follow
 * </pre>
 */
final class Protocol {
    private Protocol() {
    }

    private static final java.lang.foreign.ValueLayout.OfLong WORD =
            java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    /**
     * Encodes one region's bitmap as messages "KIND REGION FIRST_WORD" newline, then up to
     * {@link #DISCARD_WORDS_PER_MESSAGE} little-endian words; a message whose words are all zero is
     * not sent (the receiver starts from all zero).
     */
    static void encodeBitmap(String kind, int regionId, long wordCount, java.util.function.LongUnaryOperator word,
                             java.util.function.Consumer<java.lang.foreign.MemorySegment> out) {
        encodeBitmap(kind, regionId, wordCount, word, out, true);
    }

    /** As {@link #encodeBitmap(String, int, long, java.util.function.LongUnaryOperator, java.util.function.Consumer)}; all-zero messages are sent too unless {@code skipEmpty}. */
    static void encodeBitmap(String kind, int regionId, long wordCount, java.util.function.LongUnaryOperator word,
                             java.util.function.Consumer<java.lang.foreign.MemorySegment> out, boolean skipEmpty) {
        for (long w = 0; w < wordCount; w += DISCARD_WORDS_PER_MESSAGE) {
            int n = (int) Math.min(DISCARD_WORDS_PER_MESSAGE, wordCount - w);
            long[] words = new long[n];
            boolean any = false;
            for (int i = 0; i < n; i++) {
                words[i] = word.applyAsLong(w + i);
                any |= words[i] != 0;
            }
            if (!any && skipEmpty) {
                continue;
            }
            byte[] head = (kind + " " + regionId + " " + w + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8);
            java.lang.foreign.MemorySegment m = java.lang.foreign.MemorySegment.ofArray(new byte[head.length + 8 * n]);
            java.lang.foreign.MemorySegment.copy(java.lang.foreign.MemorySegment.ofArray(head), 0, m, 0, head.length);
            for (int i = 0; i < n; i++) {
                m.set(WORD, head.length + 8L * i, words[i]);
            }
            out.accept(m);
        }
    }

    /** One decoded bitmap message: words [firstWord, firstWord + words) of region regionId. */
    record BitmapChunk(int regionId, long firstWord, long words, java.lang.foreign.MemorySegment payload, long offset) {
        long word(long i) {
            return payload.get(WORD, offset + 8 * i);
        }
    }

    /**
     * Decodes a message of {@link #encodeBitmap}, checking the region and the word range against
     * the layout (nothing from the wire reaches outside it).
     *
     * @param pageCount pages of each region, by region id
     * @throws IllegalArgumentException naming what is wrong
     */
    static BitmapChunk decodeBitmap(java.lang.foreign.MemorySegment payload, String kind, int regionCount,
                                    java.util.function.IntToLongFunction pageCount) {
        long nl = -1;
        for (long i = 0; i < Math.min(payload.byteSize(), 128); i++) {
            if (payload.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) == '\n') {
                nl = i;
                break;
            }
        }
        if (nl < 0) {
            throw new IllegalArgumentException(kind + " message without a header line");
        }
        String head = new String(payload.asSlice(0, nl).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), java.nio.charset.StandardCharsets.UTF_8);
        String[] a = head.split(" ");
        if (a.length != 3 || !a[0].equals(kind)) {
            throw new IllegalArgumentException("malformed " + kind + " header: '" + escape(head) + "'");
        }
        int regionId;
        long firstWord;
        try {
            regionId = Integer.parseInt(a[1]);
            firstWord = Long.parseLong(a[2]);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("malformed " + kind + " header: '" + escape(head) + "'", e);
        }
        if (regionId < 0 || regionId >= regionCount) {
            throw new IllegalArgumentException(kind + " for region " + regionId + " of " + regionCount);
        }
        long body = payload.byteSize() - nl - 1;
        if (body % 8 != 0) {
            throw new IllegalArgumentException(kind + " body of " + body + " bytes is not whole 8-byte words");
        }
        long words = body / 8;
        long regionWords = (pageCount.applyAsLong(regionId) + 63) / 64;
        if (firstWord < 0 || firstWord > regionWords - words) {
            throw new IllegalArgumentException(kind + " words [" + firstWord + ", +" + words + ") outside region " + regionId
                    + " (" + regionWords + " words)");
        }
        return new BitmapChunk(regionId, firstWord, words, payload, nl + 1);
    }

    /** The version of this vocabulary (docs/wire-protocol.md, "CONTROL messages of the agent"). */
    static final int VOCABULARY_VERSION = 1;
    static final String VERIFY = "verify";
    /** Background lane, before the final round: which checksum chunks that round writes (a bitmap message). */
    static final String VERIFY_FINAL = "verify-final";
    /** Source to destination, urgent, after the acknowledgement: checksum everything now. */
    static final String VERIFY_BEGIN = "verify-begin";
    /** Either way, urgent, while checksumming: "verify-progress DONE TOTAL" (bytes). */
    static final String VERIFY_PROGRESS = "verify-progress";
    static final String DONE = "done";
    static final String VERIFIED = "verified";
    static final String MISMATCH = "mismatch";
    /** Verdict when the destination could not checksum its RAM: "unverified: why". */
    static final String UNVERIFIED = "unverified";
    /** How often a side that checksums reports progress. */
    static final long VERIFY_PROGRESS_INTERVAL_NS = java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(500);

    /** @return the message "verify-progress DONE TOTAL" */
    static java.lang.foreign.MemorySegment progress(long done, long total) {
        return java.lang.foreign.MemorySegment.ofArray((VERIFY_PROGRESS + " " + done + " " + total).getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }

    /**
     * @param args what follows "verify-progress "
     * @return the DONE bytes of a progress message
     * @throws IllegalArgumentException when it is not "DONE TOTAL" with 0 <= DONE <= TOTAL
     */
    static long progressDone(String args) {
        String[] a = args.split(" ");
        if (a.length != 2) { // " ".split(" ") is empty: found by ControlFuzzTest
            throw new IllegalArgumentException("malformed " + VERIFY_PROGRESS + " message: '" + escape(args) + "' (expected DONE TOTAL)");
        }
        long done;
        long total;
        try {
            done = Long.parseLong(a[0]);
            total = Long.parseLong(a[1]);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("malformed " + VERIFY_PROGRESS + " message: '" + escape(args) + "'", e);
        }
        if (done < 0 || done > total) {
            throw new IllegalArgumentException("malformed " + VERIFY_PROGRESS + " message: '" + escape(args) + "' (expected DONE TOTAL, 0 <= DONE <= TOTAL)");
        }
        return done;
    }

    /** @return text from the peer made safe to print ({@link PeerText}), at most 512 characters */
    static String escape(String text) {
        return PeerText.escape(text, 512);
    }

    static final String POPULATE = "populate";
    /** Background lane, after a round end: "postcopy-discard REGION FIRST_WORD\n" then raw dirty-bitmap words (little-endian u64). */
    static final String POSTCOPY_DISCARD = "postcopy-discard";
    /** Background lane, after the discards and a round end: start the guest here, faults go to the source. */
    static final String POSTCOPY_START = "postcopy-start";
    /** Destination to source, urgent: the guest runs on the destination (postcopy downtime ends). */
    static final String POSTCOPY_RUNNING = "postcopy-running";
    /** Destination to source, urgent, before the completion acknowledgement: "postcopy-stats {json}". */
    static final String POSTCOPY_STATS = "postcopy-stats";
    /** Source to destination, urgent, after the handshake: "session ID". */
    static final String SESSION = "session";
    /** Source to destination, urgent, first message of a new connection in postcopy-paused: "postcopy-recover ID". */
    static final String POSTCOPY_RECOVER = "postcopy-recover";
    /** Destination to source, urgent: "postcopy-resume REGION FIRST_WORD\n" then the received bitmap's words. */
    static final String POSTCOPY_RESUME = "postcopy-resume";
    /** Destination to source, urgent: the received bitmap is complete. */
    static final String POSTCOPY_RESUME_END = "postcopy-resume-end";
    /** Words of dirty bitmap per discard message (under the 64 KiB control limit). */
    static final int DISCARD_WORDS_PER_MESSAGE = 8000;
    /** Population hints describe chunks of this many bytes. */
    static final long POPULATE_CHUNK_BYTES = 64L << 20;
    /** Chunks per hint message (hex: two characters per eight chunks; well under the 64 KiB control limit). */
    static final int POPULATE_CHUNKS_PER_MESSAGE = 8 * 16_000;
}
