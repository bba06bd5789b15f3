package io.pagewire.transport.spi;

/**
 * Where a region's memory lives in a file: an open descriptor of a memfd or a file on tmpfs or
 * hugetlbfs, and the region's offset in it. A local transport that can pass descriptors
 * ({@link Capability#SHARED_MEMORY}) hands the memory itself to the destination instead of
 * copying its pages.
 *
 * <p>On the source the descriptor stays the caller's (it must stay open until the connection is
 * closed). On the destination ({@link MessageHandler#onSharedRegion}) it is the handler's, to map
 * and close.
 *
 * @param fd an open file descriptor
 * @param offset the region's first byte in the file, a multiple of the region's page size
 */
public record RegionFile(int fd, long offset) {
    public RegionFile {
        if (fd < 0) {
            throw new IllegalArgumentException("file descriptor " + fd + " is negative");
        }
        if (offset < 0) {
            throw new IllegalArgumentException("offset " + offset + " is negative");
        }
    }
}
