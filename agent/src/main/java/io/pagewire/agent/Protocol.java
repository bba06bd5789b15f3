package io.pagewire.agent;

/**
 * The agent's control messages, carried as CONTROL frames on the urgent lane (UTF-8 text).
 * <pre>
 *   source -> destination  "verify CRC0 CRC1 ..."   after completion: CRC32C of every region, in hex
 *   source -> destination  "done"                   after completion, without verification
 *   destination -> source  "verified" | "mismatch ..."
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
    /** Population hints describe chunks of this many bytes. */
    static final long POPULATE_CHUNK_BYTES = 64L << 20;
    /** Chunks per hint message (hex: two characters per eight chunks; well under the 64 KiB control limit). */
    static final int POPULATE_CHUNKS_PER_MESSAGE = 8 * 16_000;
}
