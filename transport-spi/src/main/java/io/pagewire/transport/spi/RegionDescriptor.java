package io.pagewire.transport.spi;

import java.nio.charset.StandardCharsets;
import java.util.Objects;

/**
 * What both ends must agree on about one RAM region: its name, size and page size.
 * This is what travels in the handshake.
 *
 * @param name region name, 1..255 bytes of UTF-8 (like a QEMU RAMBlock id, e.g. {@code pc.ram})
 * @param sizeBytes size in bytes, a positive multiple of {@code pageSize}
 * @param pageSize page size in bytes, a power of two from 512 B to 1 GiB
 */
public record RegionDescriptor(String name, long sizeBytes, long pageSize) {
    /** Largest page size accepted (1 GiB huge pages). */
    public static final long MAX_PAGE_SIZE = 1L << 30;
    /** Smallest page size accepted. */
    public static final long MIN_PAGE_SIZE = 512;
    /** Longest region name, in UTF-8 bytes. */
    public static final int MAX_NAME_BYTES = 255;

    public RegionDescriptor {
        // The name may come from a peer's HELLO: messages show it escaped (PeerText).
        Objects.requireNonNull(name, "name");
        int nameBytes = name.getBytes(StandardCharsets.UTF_8).length;
        if (nameBytes == 0 || nameBytes > MAX_NAME_BYTES) {
            throw invalid("region name '" + PeerText.escape(name) + "' is " + nameBytes + " bytes of UTF-8; expected 1.." + MAX_NAME_BYTES);
        }
        if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || Long.bitCount(pageSize) != 1) {
            throw invalid("region '" + PeerText.escape(name) + "': page size " + pageSize + " is not a power of two in "
                    + MIN_PAGE_SIZE + ".." + MAX_PAGE_SIZE);
        }
        if (sizeBytes <= 0 || sizeBytes % pageSize != 0) {
            throw invalid("region '" + PeerText.escape(name) + "': size " + sizeBytes + " is not a positive multiple of the page size " + pageSize);
        }
    }

    /** @return number of pages in the region */
    public long pageCount() {
        return sizeBytes / pageSize;
    }

    /** @return log2 of the page size */
    public int pageShift() {
        return Long.numberOfTrailingZeros(pageSize);
    }

    private static TransportException invalid(String message) {
        return new TransportException(TransportException.Kind.INVALID_CONFIG, message);
    }
}
