package io.pagewire.transport.spi.wire;

/**
 * Frame types. 0 is reserved as invalid, so a zeroed header is never a valid frame.
 */
public final class FrameType {
    private FrameType() {
    }

    public static final int INVALID = 0;
    /** Source to destination, first frame of the urgent connection: session, parameters, RAM layout. */
    public static final int HELLO = 1;
    /** Destination to source: handshake accepted. */
    public static final int HELLO_ACK = 2;
    /** Source to destination, first frame of each background connection: session id and channel index. */
    public static final int JOIN = 3;
    /** Page data: region, first page, page count; payload = pages. */
    public static final int PAGES = 4;
    /** Zero pages: region, first page, page count; no payload. */
    public static final int ZERO_RUN = 5;
    /** Ballooned pages: region, first page, page count; no payload. */
    public static final int SKIP_RUN = 6;
    /** Round barrier: first = round number. */
    public static final int ROUND_END = 7;
    /** Destination to source: send these pages (postcopy). */
    public static final int PAGE_REQUEST = 8;
    /** Source: end of stream (count = pages sent on this channel); destination: acknowledgement. */
    public static final int COMPLETE = 9;
    /** Fatal error; payload = UTF-8 reason. The sender closes after it. */
    public static final int ERROR = 10;
    /** Opaque control message; payload = bytes. */
    public static final int CONTROL = 11;
    /** Liveness, urgent connection only; first = sender's clock (ns). */
    public static final int HEARTBEAT = 12;
    /**
     * Scattered pages of one region: count = n; payload = n ascending page indices (u64), then the
     * n pages' data in that order (QEMU multifd's packet shape).
     */
    public static final int PAGE_LIST = 13;
    /**
     * Source to destination, right after a HELLO with {@link Hello#FLAG_SHARED_MEMORY} on the same
     * connection (a unix domain socket): count = n regions handed over; payload = n entries of region id
     * (u32), reserved (u32), offset in the file (u64); the n file descriptors travel with it (SCM_RIGHTS),
     * in the same order.
     */
    public static final int MEMORY = 14;
    /**
     * Either way, during the handshake only, after a HELLO with {@link Hello#FLAG_AUTHENTICATED}: one
     * message of the kit's authentication exchange (payload: the message, at most 32 KiB).
     */
    public static final int AUTH = 15;

    /** Highest type number. */
    public static final int MAX = AUTH;

    /** @return a name for messages */
    public static String name(int type) {
        return switch (type) {
            case HELLO -> "HELLO";
            case HELLO_ACK -> "HELLO_ACK";
            case JOIN -> "JOIN";
            case PAGES -> "PAGES";
            case ZERO_RUN -> "ZERO_RUN";
            case SKIP_RUN -> "SKIP_RUN";
            case ROUND_END -> "ROUND_END";
            case PAGE_REQUEST -> "PAGE_REQUEST";
            case COMPLETE -> "COMPLETE";
            case ERROR -> "ERROR";
            case CONTROL -> "CONTROL";
            case HEARTBEAT -> "HEARTBEAT";
            case PAGE_LIST -> "PAGE_LIST";
            case MEMORY -> "MEMORY";
            case AUTH -> "AUTH";
            default -> "unknown(" + type + ")";
        };
    }
}
