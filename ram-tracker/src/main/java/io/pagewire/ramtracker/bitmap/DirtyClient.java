package io.pagewire.ramtracker.bitmap;

/**
 * Consumers of dirty information, each with its own bitmap (seed 001 split QEMU's one byte per
 * page into separate bitmaps per client). Each client clears its own bits as it consumes them;
 * a page sent by the migration is still dirty for a snapshot or checkpoint running at the same
 * time.
 */
public enum DirtyClient {
    /** Precopy rounds: pages to send again. */
    MIGRATION,
    /** A live snapshot (seed 003): pages changed since the snapshot started. */
    SNAPSHOT,
    /** Continuous checkpointing to a standby (seed 004): pages changed since the last checkpoint. */
    CHECKPOINT
}
