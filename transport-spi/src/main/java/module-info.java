/**
 * The pagewire transport SPI: provider lookup by URI scheme, connections with an urgent and a
 * background lane, the page-oriented data path and the framing shared by byte-stream transports.
 */
module io.pagewire.transport.spi {
    exports io.pagewire.transport.spi;
    exports io.pagewire.transport.spi.wire;

    uses io.pagewire.transport.spi.TransportProvider;
}
