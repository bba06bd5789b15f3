package io.pagewire.agent;

/**
 * The agent's control messages, carried as CONTROL frames on the urgent lane (UTF-8 text).
 * <pre>
 *   source -> destination  "verify CRC0 CRC1 ..."   after completion: CRC32C of every region, in hex
 *   source -> destination  "done"                   after completion, without verification
 *   destination -> source  "verified" | "mismatch ..."
 * </pre>
 */
final class Protocol {
    private Protocol() {
    }

    static final String VERIFY = "verify";
    static final String DONE = "done";
    static final String VERIFIED = "verified";
    static final String MISMATCH = "mismatch";
}
