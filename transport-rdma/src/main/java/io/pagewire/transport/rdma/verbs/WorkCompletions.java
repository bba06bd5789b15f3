package io.pagewire.transport.rdma.verbs;

/**
 * A reusable array of work completions filled by {@link CompletionQueue#poll}. Struct of arrays:
 * polling allocates nothing. One per polling thread.
 */
public final class WorkCompletions {
    private final int capacity;
    private final long[] wrId;
    private final int[] status;
    private final int[] opcode;
    private final int[] byteLength;
    private int count;

    public WorkCompletions(int capacity) {
        this.capacity = capacity;
        this.wrId = new long[capacity];
        this.status = new int[capacity];
        this.opcode = new int[capacity];
        this.byteLength = new int[capacity];
    }

    /** @return most completions one poll may return */
    public int capacity() {
        return capacity;
    }

    /** @return completions from the last poll */
    public int count() {
        return count;
    }

    /** For implementations: empties before a poll. */
    public void reset() {
        count = 0;
    }

    /** For implementations: appends one completion; false when full. */
    public boolean add(long id, int st, int op, int bytes) {
        if (count == capacity) {
            return false;
        }
        wrId[count] = id;
        status[count] = st;
        opcode[count] = op;
        byteLength[count] = bytes;
        count++;
        return true;
    }

    public long wrId(int i) {
        return wrId[i];
    }

    /** @return an {@code ibv_wc_status} value, {@link Verbs#WC_SUCCESS} when it worked */
    public int status(int i) {
        return status[i];
    }

    /** @return an {@code ibv_wc_opcode} value; only meaningful when the status is success */
    public int opcode(int i) {
        return opcode[i];
    }

    /** @return bytes received (receive completions) */
    public int byteLength(int i) {
        return byteLength[i];
    }
}
