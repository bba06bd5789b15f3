package io.pagewire.transport.rdma.verbs;

/** A memory registration ({@code ibv_mr}). */
public interface MemoryRegion {

    /** @return the start address */
    long address();

    /** @return the length in bytes */
    long length();

    /** @return the local key, for scatter/gather entries */
    int lkey();

    /** @return the remote key, for a peer's RDMA operations */
    int rkey();

    /** Deregisters ({@code ibv_dereg_mr}): from now on the keys are refused. Idempotent. */
    void deregister();
}
