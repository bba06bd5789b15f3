package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * The protection domain of one accepted queue pair and, once that queue pair claims a session (its
 * connect request or its HELLO names one), of that session on the destination. Every connect request
 * gets a domain of its own, except a background queue pair whose request names (in its private data)
 * a session not yet started: it is created in that session's domain, since a queue pair's domain is
 * fixed when it is created, before its JOIN can be read.
 *
 * <p>When the session starts, the domain is {@linkplain #seal sealed}: no queue pair is created in
 * it any more, and every member other than the session's own queue pairs (a stranger who named the
 * session but never proved itself) is returned for disconnection; only then is destination RAM
 * registered in it. Reference counted: each member queue pair and the connection hold one; the
 * domain is deallocated when the last is gone (after the connection deregistered its RAM).
 */
final class SessionDomain {
    final ProtectionDomain pd;
    private final Set<RdmaEndpoint> members = Collections.newSetFromMap(new IdentityHashMap<>());
    private int refs;
    private boolean sealed;
    private boolean deallocated;
    /** The queue pair whose HELLO claimed this domain for its session, and that session; guarded by the listener's session table. */
    RdmaEndpoint owner;
    long sessionId;

    SessionDomain(ProtectionDomain pd) {
        this.pd = pd;
    }

    /**
     * Makes {@code ep}'s queue pair (about to be created) a member, retaining the domain for it.
     *
     * @return false when sealed or deallocated: the queue pair must go elsewhere
     */
    synchronized boolean admit(RdmaEndpoint ep) {
        if (sealed || deallocated) {
            return false;
        }
        members.add(ep);
        refs++;
        return true;
    }

    /** The member's queue pair is gone: releases its reference. */
    synchronized void leave(RdmaEndpoint ep) {
        if (members.remove(ep)) {
            release();
        }
    }

    /**
     * Seals the domain for a starting session and retains it once for the connection.
     *
     * @param session the session's own queue pairs
     * @return the other members, to be disconnected before any memory is registered; null when
     *         the domain is already sealed or deallocated
     */
    synchronized List<RdmaEndpoint> seal(RdmaEndpoint... session) {
        if (sealed || deallocated) {
            return null;
        }
        sealed = true;
        refs++;
        List<RdmaEndpoint> strangers = new ArrayList<>(members);
        for (RdmaEndpoint ep : session) {
            strangers.remove(ep);
        }
        return strangers;
    }

    /** Releases one reference; the last deallocates the domain ({@code ibv_dealloc_pd}). */
    synchronized void release() {
        if (refs > 0 && --refs == 0) {
            deallocated = true;
            pd.close();
        }
    }
}
