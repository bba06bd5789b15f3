/**
 * The pagewire unix domain socket transport: {@code unix:///path/to.sock}, for migrations on one host
 * (local live update). Built on the transport kit's stream layer; with {@code share-memory=true}
 * regions backed by a memfd or a file are handed to the destination (SCM_RIGHTS) instead of copied.
 */
module io.pagewire.transport.unix {
    requires io.pagewire.transport.spi;
    requires io.pagewire.linux;

    provides io.pagewire.transport.spi.TransportProvider with io.pagewire.transport.unix.UnixTransportProvider;
}
