package io.pagewire.transport.spi.wire;

import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.Role;

import java.util.List;

/**
 * Checks every received frame header against the negotiated layout and limits before a single
 * payload byte is read: frame type for this role and lane, flags, payload length, region id,
 * page range. Errors name the value and the bound. Immutable and thread-safe.
 */
public final class FrameValidator {
    private final List<RegionDescriptor> regions;
    private final long[] pageCounts;
    private final int[] pageShifts;
    private final int maxPagePayload;
    private final boolean dataDigest;
    private final boolean sharedChannel;

    /**
     * A validator for a connection whose urgent lane has a path of its own (no
     * {@link FrameHeader#FLAG_URGENT_LANE} accepted).
     *
     * @param regions the negotiated regions
     * @param maxPagePayload largest PAGES payload negotiated
     * @param dataDigest whether PAGES frames carry a data digest
     */
    public FrameValidator(List<RegionDescriptor> regions, int maxPagePayload, boolean dataDigest) {
        this(regions, maxPagePayload, dataDigest, false);
    }

    /**
     * @param regions the negotiated regions
     * @param maxPagePayload largest PAGES payload negotiated
     * @param dataDigest whether PAGES frames carry a data digest
     * @param sharedChannel whether the handshake negotiated a channel shared by both lanes, whose
     *        urgent frames carry {@link FrameHeader#FLAG_URGENT_LANE}
     */
    public FrameValidator(List<RegionDescriptor> regions, int maxPagePayload, boolean dataDigest, boolean sharedChannel) {
        this.regions = List.copyOf(regions);
        this.pageCounts = new long[regions.size()];
        this.pageShifts = new int[regions.size()];
        for (int i = 0; i < regions.size(); i++) {
            pageCounts[i] = regions.get(i).pageCount();
            pageShifts[i] = regions.get(i).pageShift();
        }
        this.maxPagePayload = maxPagePayload;
        this.dataDigest = dataDigest;
        this.sharedChannel = sharedChannel;
    }

    /** @return whether PAGES frames carry a data digest */
    public boolean dataDigest() {
        return dataDigest;
    }

    /** @return the largest PAGES payload */
    public int maxPagePayload() {
        return maxPagePayload;
    }

    /**
     * Validates a decoded header received after the handshake.
     *
     * @param h the header (CRC already checked by {@link FrameHeader#decode()})
     * @param receiver the role of the side that received it
     * @param lane the lane it arrived on
     * @throws WireException naming the bad value and its bound
     */
    public void validate(FrameHeader h, Role receiver, LaneKind lane) {
        int type = h.type();
        if ((h.flags() & ~FrameHeader.KNOWN_FLAGS) != 0) {
            throw err(h, "unknown flags 0x" + Integer.toHexString(h.flags()) + " (known: 0x" + Integer.toHexString(FrameHeader.KNOWN_FLAGS) + ")");
        }
        if (h.isUrgentLane()) {
            if (!sharedChannel) {
                throw err(h, "URGENT_LANE flag, but the handshake negotiated no shared channel (the urgent lane has a connection of its own)");
            }
            if (lane != LaneKind.URGENT) {
                throw err(h, "URGENT_LANE flag on a frame taken for the " + lane.name().toLowerCase() + " lane");
            }
        }
        if (h.hasDataDigest() && type != FrameType.PAGES && type != FrameType.PAGE_LIST) {
            throw err(h, "DATA_DIGEST flag on a frame without page data");
        }
        long payload = Integer.toUnsignedLong(h.payloadLength());
        switch (type) {
            case FrameType.PAGES -> {
                expectReceiver(h, receiver, Role.DESTINATION);
                if (h.hasDataDigest() != dataDigest) {
                    throw err(h, dataDigest ? "no data digest, but the handshake negotiated data digests"
                            : "a data digest, but the handshake negotiated none");
                }
                int shift = pageShift(h);
                long maxPages = maxPagePayload >>> shift;
                if (h.count() < 1 || h.count() > maxPages) {
                    throw err(h, "page count " + h.count() + " outside 1.." + maxPages + " (max payload " + maxPagePayload + " bytes)");
                }
                checkRange(h);
                if (payload != h.count() << shift) {
                    throw err(h, "payload length " + payload + " != page count " + h.count() + " x page size " + (1L << shift));
                }
            }
            case FrameType.PAGE_LIST -> {
                expectReceiver(h, receiver, Role.DESTINATION);
                if (h.hasDataDigest() != dataDigest) {
                    throw err(h, dataDigest ? "no data digest, but the handshake negotiated data digests"
                            : "a data digest, but the handshake negotiated none");
                }
                int shift = pageShift(h);
                long maxPages = maxListPages(shift);
                if (h.count() < 1 || h.count() > maxPages) {
                    throw err(h, "page count " + h.count() + " outside 1.." + maxPages + " (max payload " + maxPagePayload + " bytes)");
                }
                if (h.first() != 0) {
                    throw err(h, "first " + h.first() + " must be 0 (the page indices are in the payload)");
                }
                if (payload != h.count() * ((1L << shift) + 8)) {
                    throw err(h, "payload length " + payload + " != page count " + h.count() + " x (page size " + (1L << shift) + " + 8)");
                }
            }
            case FrameType.ZERO_RUN, FrameType.SKIP_RUN -> {
                expectReceiver(h, receiver, Role.DESTINATION);
                expectNoPayload(h, payload);
                checkRange(h);
                if (h.count() < 1) {
                    throw err(h, "page count " + h.count() + " must be at least 1");
                }
            }
            case FrameType.ROUND_END -> {
                expectReceiver(h, receiver, Role.DESTINATION);
                expectLane(h, lane, LaneKind.BACKGROUND);
                expectNoPayload(h, payload);
                if (h.first() < 0) {
                    throw err(h, "round number " + h.first() + " is negative");
                }
            }
            case FrameType.PAGE_REQUEST -> {
                expectReceiver(h, receiver, Role.SOURCE);
                expectLane(h, lane, LaneKind.URGENT);
                expectNoPayload(h, payload);
                long maxPages = maxPagePayload >>> pageShift(h);
                if (h.count() < 1 || h.count() > maxPages) {
                    throw err(h, "page count " + h.count() + " outside 1.." + maxPages);
                }
                checkRange(h);
            }
            case FrameType.COMPLETE -> {
                expectNoPayload(h, payload);
                expectLane(h, lane, receiver == Role.DESTINATION ? LaneKind.BACKGROUND : LaneKind.URGENT);
                if (h.count() < 0) {
                    throw err(h, "page count " + h.count() + " is negative");
                }
            }
            case FrameType.ERROR -> {
                if (payload > Wire.MAX_ERROR_BYTES) {
                    throw err(h, "error text of " + payload + " bytes exceeds " + Wire.MAX_ERROR_BYTES);
                }
            }
            case FrameType.CONTROL -> {
                if (payload > Wire.MAX_CONTROL_BYTES) {
                    throw err(h, "control payload of " + payload + " bytes exceeds " + Wire.MAX_CONTROL_BYTES);
                }
            }
            case FrameType.HEARTBEAT -> {
                expectLane(h, lane, LaneKind.URGENT);
                expectNoPayload(h, payload);
            }
            case FrameType.HELLO, FrameType.HELLO_ACK, FrameType.JOIN, FrameType.MEMORY, FrameType.AUTH ->
                    throw err(h, "handshake frame after the handshake");
            default -> throw err(h, "unknown frame type " + type + " (this side speaks wire version " + Wire.VERSION
                    + ": types 1.." + FrameType.MAX + ")");
        }
    }

    /** @return most pages a PAGE_LIST may carry for pages of {@code 1 << pageShift} bytes */
    public long maxListPages(int pageShift) {
        return Math.min(Wire.MAX_LIST_PAGES, maxPagePayload / ((1L << pageShift) + 8));
    }

    /**
     * Checks the page indices of a PAGE_LIST (read from its payload) before any page data is
     * read: each inside the region, strictly ascending (so no page appears twice).
     *
     * @param h the frame header (already validated)
     * @param indices the indices, big-endian u64, {@code h.count()} of them
     */
    public void validatePageList(FrameHeader h, java.lang.foreign.MemorySegment indices) {
        int r = h.region();
        long pages = pageCounts[r];
        long previous = -1;
        for (long i = 0; i < h.count(); i++) {
            long p = indices.get(Wire.U64, i * 8);
            if (p < 0 || p >= pages) {
                throw err(h, "page index " + p + " (entry " + i + ") outside region " + r + " '" + regions.get(r).name() + "' of " + pages + " pages");
            }
            if (p <= previous) {
                throw err(h, "page index " + p + " (entry " + i + ") not above the previous " + previous + ": indices must be strictly ascending");
            }
            previous = p;
        }
    }

    /** Checks the region id; returns the region's page shift. */
    private int pageShift(FrameHeader h) {
        long region = Integer.toUnsignedLong(h.region());
        if (region >= regions.size()) {
            throw err(h, "region id " + region + " outside 0.." + (regions.size() - 1));
        }
        return pageShifts[(int) region];
    }

    /** Checks region id and page range; returns the region's page shift. */
    private int checkRange(FrameHeader h) {
        int shift = pageShift(h);
        int r = (int) Integer.toUnsignedLong(h.region());
        long first = h.first();
        long count = h.count();
        long pages = pageCounts[r];
        // Overflow-safe: first in [0, pages], count in [0, pages - first].
        if (first < 0 || first >= pages || count < 0 || count > pages - first) {
            throw err(h, "pages [" + first + ", " + first + "+" + count + ") outside region " + r + " '" + regions.get(r).name()
                    + "' of " + pages + " pages");
        }
        return shift;
    }

    private static void expectReceiver(FrameHeader h, Role receiver, Role expected) {
        if (receiver != expected) {
            throw err(h, FrameType.name(h.type()) + " may only be sent to the " + expected.name().toLowerCase());
        }
    }

    private static void expectLane(FrameHeader h, LaneKind lane, LaneKind expected) {
        if (lane != expected) {
            throw err(h, FrameType.name(h.type()) + " arrived on the " + lane.name().toLowerCase() + " lane; it belongs on the "
                    + expected.name().toLowerCase() + " lane");
        }
    }

    private static void expectNoPayload(FrameHeader h, long payload) {
        if (payload != 0) {
            throw err(h, "payload length " + payload + " on a frame that has no payload");
        }
    }

    private static WireException err(FrameHeader h, String why) {
        return new WireException("invalid " + FrameType.name(h.type()) + " frame: " + why);
    }
}
