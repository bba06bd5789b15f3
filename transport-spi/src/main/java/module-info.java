/**
 * The pagewire transport SPI: provider lookup by URI scheme, connections with an urgent and a
 * background lane, the page-oriented data path, the framing shared by byte-stream transports, and
 * the kit transports are built on. The native layer and the stream layer are exported only to the
 * transport modules.
 */
module io.pagewire.transport.spi {
    requires jdk.jfr;
    requires java.naming;

    exports io.pagewire.transport.spi;
    exports io.pagewire.transport.spi.wire;
    exports io.pagewire.transport.spi.kit;
    exports io.pagewire.transport.spi.kit.stream to io.pagewire.transport.tcp, io.pagewire.transport.unix;
    exports io.pagewire.transport.spi.linux to io.pagewire.transport.tcp, io.pagewire.transport.unix, io.pagewire.transport.aeron;

    uses io.pagewire.transport.spi.TransportProvider;
}
