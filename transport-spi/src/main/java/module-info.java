/**
 * The pagewire transport SPI: provider lookup by URI scheme, connections with an urgent and a
 * background lane, the page-oriented data path, the framing shared by byte-stream transports, and
 * the kit transports are built on. The stream layer is exported only to the transport modules; the
 * native layer is its own module, io.pagewire.linux.
 */
module io.pagewire.transport.spi {
    requires jdk.jfr;
    requires java.naming;
    requires io.pagewire.linux;

    exports io.pagewire.transport.spi;
    exports io.pagewire.transport.spi.wire;
    exports io.pagewire.transport.spi.kit;
    exports io.pagewire.transport.spi.kit.stream to io.pagewire.transport.tcp, io.pagewire.transport.unix;

    uses io.pagewire.transport.spi.TransportProvider;
}
