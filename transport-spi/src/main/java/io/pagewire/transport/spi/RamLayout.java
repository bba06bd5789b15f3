package io.pagewire.transport.spi;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The guest RAM a connection moves: an ordered list of regions; a region's id is its index.
 * Source and destination must have the same descriptors (names, sizes, page sizes, order);
 * the handshake rejects any difference, naming it.
 */
public final class RamLayout {
    /** Most regions in one layout. */
    public static final int MAX_REGIONS = 4096;

    private final List<RamRegion> regions;
    private final List<RegionDescriptor> descriptors;

    private RamLayout(List<RamRegion> regions) {
        if (regions.isEmpty() || regions.size() > MAX_REGIONS) {
            throw new TransportException(TransportException.Kind.INVALID_CONFIG,
                    "a RAM layout needs 1.." + MAX_REGIONS + " regions, got " + regions.size());
        }
        Set<String> names = new HashSet<>();
        for (RamRegion r : regions) {
            if (!names.add(r.name())) {
                throw new TransportException(TransportException.Kind.INVALID_CONFIG, "region name '" + PeerText.escape(r.name()) + "' appears twice");
            }
        }
        this.regions = List.copyOf(regions);
        this.descriptors = this.regions.stream().map(RamRegion::descriptor).toList();
    }

    /** @return a layout of the given regions, ids in order */
    public static RamLayout of(RamRegion... regions) {
        return new RamLayout(List.of(regions));
    }

    /** @return a layout of the given regions, ids in order */
    public static RamLayout of(List<RamRegion> regions) {
        return new RamLayout(regions);
    }

    /** @return the regions (unmodifiable) */
    public List<RamRegion> regions() {
        return regions;
    }

    /** @return region descriptors in id order (what the handshake compares) */
    public List<RegionDescriptor> descriptors() {
        return descriptors;
    }

    /** @return the region with this id */
    public RamRegion region(int id) {
        return regions.get(id);
    }

    /** @return number of regions */
    public int regionCount() {
        return regions.size();
    }

    /** @return total bytes of all regions */
    public long totalBytes() {
        long sum = 0;
        for (RegionDescriptor d : descriptors) {
            sum += d.sizeBytes();
        }
        return sum;
    }

    /**
     * Compares two sets of descriptors.
     *
     * @param local this side's descriptors
     * @param remote the peer's descriptors
     * @return null when they match, else a sentence naming the first difference (the names escaped: {@link PeerText})
     */
    public static String mismatch(List<RegionDescriptor> local, List<RegionDescriptor> remote) {
        if (local.size() != remote.size()) {
            return "the destination has " + local.size() + " RAM region(s) " + names(local) + ", the source sends "
                    + remote.size() + " " + names(remote);
        }
        for (int i = 0; i < local.size(); i++) {
            RegionDescriptor l = local.get(i);
            RegionDescriptor r = remote.get(i);
            if (!l.name().equals(r.name())) {
                return "region " + i + " is '" + l.name() + "' at the destination but '" + PeerText.escape(r.name()) + "' at the source";
            }
            if (l.sizeBytes() != r.sizeBytes()) {
                return "region " + i + " '" + l.name() + "' is " + l.sizeBytes() + " bytes at the destination but "
                        + r.sizeBytes() + " bytes at the source";
            }
            if (l.pageSize() != r.pageSize()) {
                return "region " + i + " '" + l.name() + "' has " + l.pageSize() + "-byte pages at the destination but "
                        + r.pageSize() + "-byte pages at the source";
            }
        }
        return null;
    }

    private static String names(List<RegionDescriptor> ds) {
        List<String> n = new ArrayList<>();
        for (RegionDescriptor d : ds) {
            n.add(PeerText.escape(d.name())); // the remote side's names are a peer's text
        }
        return n.toString();
    }
}
