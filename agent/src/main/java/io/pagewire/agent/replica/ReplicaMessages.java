package io.pagewire.agent.replica;

import io.pagewire.transport.spi.PeerText;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

/**
 * The control messages of checkpoint replication (docs/replication.md, "Wire messages"), typed text in the agent's
 * control vocabulary ({@code TYPE ARGS}, decimal numbers), all on the urgent lane so that they never wait behind
 * queued background pages:
 * <pre>
 *   primary -> secondary  "replica-checkpoint EPOCH ROUND PAGES"
 *                         checkpoint EPOCH (1, 2, ...) is every page sent on the background lane before ROUND_END ROUND;
 *                         PAGES pages were sent since the previous checkpoint's ROUND_END (background passes and the pause)
 *   secondary -> primary  "replica-applied EPOCH COPIED_PAGES APPLY_NS SECONDARY_DIRTY_PAGES"
 *                         checkpoint EPOCH is complete at the secondary and its guest RAM equals it: COPIED_PAGES pages
 *                         were copied from the RAM cache in APPLY_NS ns, SECONDARY_DIRTY_PAGES of them because the
 *                         secondary's own guest had written them
 * </pre>
 * Pages themselves are ordinary PAGE frames on the background lane, placed straight into the secondary's RAM cache.
 */
final class ReplicaMessages {
    static final String CHECKPOINT = "replica-checkpoint";
    static final String APPLIED = "replica-applied";

    private ReplicaMessages() {
    }

    /** A decoded checkpoint marker. */
    record Checkpoint(long epoch, long round, long pages) {
    }

    /** A decoded acknowledgement. */
    record Applied(long epoch, long copiedPages, long applyNs, long secondaryDirtyPages) {
    }

    static MemorySegment checkpoint(long epoch, long round, long pages) {
        return text(CHECKPOINT + " " + epoch + " " + round + " " + pages);
    }

    static MemorySegment applied(long epoch, long copiedPages, long applyNs, long secondaryDirty) {
        return text(APPLIED + " " + epoch + " " + copiedPages + " " + applyNs + " " + secondaryDirty);
    }

    private static MemorySegment text(String s) {
        return MemorySegment.ofArray(s.getBytes(StandardCharsets.US_ASCII));
    }

    /** @return the message as text (at most 256 bytes are looked at: longer is malformed) */
    static String decode(MemorySegment payload) {
        if (payload.byteSize() > 256) {
            throw new IllegalArgumentException("replication control message of " + payload.byteSize() + " bytes exceeds 256");
        }
        return new String(payload.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
    }

    static Checkpoint parseCheckpoint(String text) {
        long[] v = numbers(text, CHECKPOINT, 3);
        if (v[0] < 1) {
            throw new IllegalArgumentException("checkpoint epoch " + v[0] + " is not positive");
        }
        return new Checkpoint(v[0], v[1], v[2]);
    }

    static Applied parseApplied(String text) {
        long[] v = numbers(text, APPLIED, 4);
        return new Applied(v[0], v[1], v[2], v[3]);
    }

    /** @return the message's type (its first word) */
    static String type(String text) {
        int sp = text.indexOf(' ');
        return sp < 0 ? text : text.substring(0, sp);
    }

    private static long[] numbers(String text, String type, int count) {
        String[] f = text.split(" ", -1);
        if (f.length != count + 1 || !f[0].equals(type)) {
            throw new IllegalArgumentException("malformed '" + PeerText.escape(text) + "': expected '" + type + "' and " + count + " numbers");
        }
        long[] v = new long[count];
        for (int i = 0; i < count; i++) {
            try {
                v[i] = Long.parseLong(f[i + 1]);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("malformed '" + PeerText.escape(text) + "': field " + (i + 1) + " is not a decimal number");
            }
            if (v[i] < 0) {
                throw new IllegalArgumentException("malformed '" + PeerText.escape(text) + "': field " + (i + 1) + " is negative");
            }
        }
        return v;
    }
}
