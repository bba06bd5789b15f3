/**
 * The pagewire TCP transport: {@code tcp://host:port?channels=N}. Several background
 * connections (like QEMU multifd) plus one urgent connection with TCP_NODELAY.
 */
module io.pagewire.transport.tcp {
    requires io.pagewire.transport.spi;
    requires io.pagewire.linux;

    provides io.pagewire.transport.spi.TransportProvider with io.pagewire.transport.tcp.TcpTransportProvider;
}
