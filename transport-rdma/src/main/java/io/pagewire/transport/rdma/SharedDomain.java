package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.ProtectionDomain;

/**
 * A listener's protection domain, shared by every queue pair and registration it creates and by
 * the connections it hands out, which may outlive it: reference counted, deallocated when the
 * last user is gone.
 */
final class SharedDomain {
    final ProtectionDomain pd;
    private int refs = 1;

    SharedDomain(ProtectionDomain pd) {
        this.pd = pd;
    }

    /** @return false when already deallocated */
    synchronized boolean retain() {
        if (refs == 0) {
            return false;
        }
        refs++;
        return true;
    }

    synchronized void release() {
        if (refs > 0 && --refs == 0) {
            pd.close();
        }
    }
}
