package io.pagewire.transport.rdma.verbs;

import java.lang.foreign.MemorySegment;

/** A protection domain ({@code ibv_pd}): memory registrations and queue pairs that may use them. */
public interface ProtectionDomain extends AutoCloseable {

    /**
     * Registers memory ({@code ibv_reg_mr}): pins it and returns its keys.
     *
     * @param memory native memory, at most {@link Verbs#MAX_REGISTRATION_BYTES}
     * @param access {@link Verbs#ACCESS_LOCAL_WRITE} | {@link Verbs#ACCESS_REMOTE_WRITE} | {@link Verbs#ACCESS_REMOTE_READ}, or 0
     */
    MemoryRegion register(MemorySegment memory, int access) throws VerbsException;

    /** Deallocates the domain; its registrations must be gone. Idempotent. */
    @Override
    void close();
}
