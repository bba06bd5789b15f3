package io.pagewire.transport.rdma.verbs;

/**
 * A reusable list of send work requests, one scatter/gather entry each, posted with one
 * {@link QueuePair#postSend} call. Struct of arrays: filling it allocates nothing. Not
 * thread-safe; one per posting thread (or guarded by the poster's lock).
 */
public final class SendBatch {
    private final int capacity;
    private final int[] opcode;
    private final int[] flags;
    private final long[] wrId;
    private final long[] localAddress;
    private final int[] length;
    private final int[] lkey;
    private final long[] remoteAddress;
    private final int[] rkey;
    private int count;

    /** @param capacity most work requests in one batch */
    public SendBatch(int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity " + capacity);
        }
        this.capacity = capacity;
        this.opcode = new int[capacity];
        this.flags = new int[capacity];
        this.wrId = new long[capacity];
        this.localAddress = new long[capacity];
        this.length = new int[capacity];
        this.lkey = new int[capacity];
        this.remoteAddress = new long[capacity];
        this.rkey = new int[capacity];
    }

    /** Empties the batch. */
    public SendBatch clear() {
        count = 0;
        return this;
    }

    /** @return room left */
    public int remaining() {
        return capacity - count;
    }

    /** @return the capacity */
    public int capacity() {
        return capacity;
    }

    /** @return requests in the batch */
    public int count() {
        return count;
    }

    /**
     * Appends an RDMA WRITE (or READ) of {@code length} bytes.
     *
     * @return this
     */
    public SendBatch rdma(int op, long id, int sendFlags, long local, int len, int localKey, long remote, int remoteKey) {
        if (count == capacity) {
            throw new IllegalStateException("send batch full (" + capacity + " work requests)");
        }
        opcode[count] = op;
        flags[count] = sendFlags;
        wrId[count] = id;
        localAddress[count] = local;
        length[count] = len;
        lkey[count] = localKey;
        remoteAddress[count] = remote;
        rkey[count] = remoteKey;
        count++;
        return this;
    }

    /**
     * Appends a SEND of {@code length} bytes.
     *
     * @return this
     */
    public SendBatch send(long id, int sendFlags, long local, int len, int localKey) {
        return rdma(Verbs.WR_SEND, id, sendFlags, local, len, localKey, 0, 0);
    }

    public int opcode(int i) {
        return opcode[i];
    }

    public int flags(int i) {
        return flags[i];
    }

    public long wrId(int i) {
        return wrId[i];
    }

    public long localAddress(int i) {
        return localAddress[i];
    }

    public int length(int i) {
        return length[i];
    }

    public int lkey(int i) {
        return lkey[i];
    }

    public long remoteAddress(int i) {
        return remoteAddress[i];
    }

    public int rkey(int i) {
        return rkey[i];
    }
}
