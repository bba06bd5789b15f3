package io.pagewire.agent;

/**
 * The agent's control messages, carried as CONTROL frames on the urgent lane (UTF-8 text).
 * <pre>
 *   source -> destination  "verify CRC0 CRC1 ..."   after completion: CRC32C of every region, in hex
 *   source -> destination  "done"                   after completion, without verification
 *   destination -> source  "verified" | "mismatch ..."
 *   source -> destination  postcopy: "postcopy-discard ...", "postcopy-start" (background lane, between round ends);
 *   destination -> source  "postcopy-running", then "postcopy-stats {...}" before acknowledging completion
 *   source -> destination  "populate REGION CHUNK_PAGES FIRST_CHUNK HEX"  after the handshake: which chunks of
 *                          CHUNK_PAGES pages hold data at the source (bit i of the hex bytes, least significant
 *                          bit first, is chunk FIRST_CHUNK + i), so the destination populates only those, in order
 * </pre>
 */
final class Protocol {
    private Protocol() {
    }

    static final String VERIFY = "verify";
    static final String DONE = "done";
    static final String VERIFIED = "verified";
    static final String MISMATCH = "mismatch";
    static final String POPULATE = "populate";
    /** Background lane, after a round end: "postcopy-discard REGION FIRST_WORD\n" then raw dirty-bitmap words (little-endian u64). */
    static final String POSTCOPY_DISCARD = "postcopy-discard";
    /** Background lane, after the discards and a round end: start the guest here, faults go to the source. */
    static final String POSTCOPY_START = "postcopy-start";
    /** Destination to source, urgent: the guest runs on the destination (postcopy downtime ends). */
    static final String POSTCOPY_RUNNING = "postcopy-running";
    /** Destination to source, urgent, before the completion acknowledgement: "postcopy-stats {json}". */
    static final String POSTCOPY_STATS = "postcopy-stats";
    /** Words of dirty bitmap per discard message (under the 64 KiB control limit). */
    static final int DISCARD_WORDS_PER_MESSAGE = 8000;
    /** Population hints describe chunks of this many bytes. */
    static final long POPULATE_CHUNK_BYTES = 64L << 20;
    /** Chunks per hint message (hex: two characters per eight chunks; well under the 64 KiB control limit). */
    static final int POPULATE_CHUNKS_PER_MESSAGE = 8 * 16_000;
}
