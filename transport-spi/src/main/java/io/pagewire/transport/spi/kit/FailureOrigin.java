package io.pagewire.transport.spi.kit;

/**
 * Where a connection's failure came from; it decides who hears of it. Replaces the
 * {@code (tellPeer, notifyHandler)} boolean pairs each transport used to pass around.
 */
public enum FailureOrigin {
    /** This side found the fault (a bad frame, a handler that threw, a timeout, a stall): the peer is told why, the handler hears it. */
    LOCAL(true, true),
    /** The peer reported an error or went away: nobody to tell; the handler hears it. */
    PEER(false, true),
    /** The application closed or aborted before completion: the peer is told why; the handler does not hear it (it asked). */
    APPLICATION(true, false);

    private final boolean tellsPeer;
    private final boolean notifiesHandler;

    FailureOrigin(boolean tellsPeer, boolean notifiesHandler) {
        this.tellsPeer = tellsPeer;
        this.notifiesHandler = notifiesHandler;
    }

    /** @return whether the peer is sent an ERROR with the reason (best effort) */
    public boolean tellsPeer() {
        return tellsPeer;
    }

    /** @return whether the handler's {@code onError} runs (never after completion) */
    public boolean notifiesHandler() {
        return notifiesHandler;
    }
}
