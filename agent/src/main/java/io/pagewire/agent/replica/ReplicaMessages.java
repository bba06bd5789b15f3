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
 *   secondary -> primary  "replica-applied EPOCH COPIED_PAGES APPLY_NS SECONDARY_DIRTY_PAGES LAZY_PAGES WAIT_NS SPAN_NS"
 *                         checkpoint EPOCH is complete at the secondary and its guest RAM equals it: COPIED_PAGES pages
 *                         were copied from the RAM cache in APPLY_NS ns, SECONDARY_DIRTY_PAGES of them because the
 *                         secondary's own guest had written them; LAZY_PAGES pages are left to fill after the resume
 *                         (lazy apply: the primary then sends no page before replica-filled EPOCH); WAIT_NS from the
 *                         marker's arrival to the checkpoint being complete, SPAN_NS from complete to this message
 *   secondary -> primary  "replica-filled EPOCH FAULT_PAGES FILLER_PAGES FILL_NS"
 *                         the lazy fill of checkpoint EPOCH is done: FAULT_PAGES were filled on the guest's access,
 *                         FILLER_PAGES by the background filler, in FILL_NS ns after the resume
 * </pre>
 * Pages themselves are ordinary PAGE frames on the background lane, placed straight into the secondary's RAM cache.
 */
final class ReplicaMessages {
    static final String CHECKPOINT = "replica-checkpoint";
    static final String APPLIED = "replica-applied";
    static final String FILLED = "replica-filled";

    private ReplicaMessages() {
    }

    /** A decoded checkpoint marker. */
    record Checkpoint(long epoch, long round, long pages) {
    }

    /** A decoded acknowledgement. */
    record Applied(long epoch, long copiedPages, long applyNs, long secondaryDirtyPages, long lazyPages, long waitNs, long spanNs) {
    }

    /** A decoded end of a lazy fill. */
    record Filled(long epoch, long faultPages, long fillerPages, long fillNs) {
    }

    static MemorySegment checkpoint(long epoch, long round, long pages) {
        return text(CHECKPOINT + " " + epoch + " " + round + " " + pages);
    }

    static MemorySegment applied(long epoch, long copiedPages, long applyNs, long secondaryDirty, long lazyPages, long waitNs, long spanNs) {
        return text(APPLIED + " " + epoch + " " + copiedPages + " " + applyNs + " " + secondaryDirty + " " + lazyPages + " " + waitNs + " " + spanNs);
    }

    static MemorySegment filled(long epoch, long faultPages, long fillerPages, long fillNs) {
        return text(FILLED + " " + epoch + " " + faultPages + " " + fillerPages + " " + fillNs);
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
        long[] v = numbers(text, APPLIED, 7);
        return new Applied(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    }

    static Filled parseFilled(String text) {
        long[] v = numbers(text, FILLED, 4);
        return new Filled(v[0], v[1], v[2], v[3]);
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
