/**
 * The pagewire RDMA transport: one-sided RDMA WRITE through DiSNi, or over the in-process
 * simulated fabric ({@code -Dpagewire.rdma.fabric=simulated}).
 *
 * <p>DiSNi is a static (optional) dependency: the module resolves and works over the simulated
 * fabric without it; for real RDMA on the module path add {@code --add-modules disni}.
 */
module io.pagewire.transport.rdma {
    requires transitive io.pagewire.transport.spi;
    requires static disni;

    exports io.pagewire.transport.rdma;
    exports io.pagewire.transport.rdma.verbs;
    exports io.pagewire.transport.rdma.sim;

    provides io.pagewire.transport.spi.TransportProvider with io.pagewire.transport.rdma.RdmaTransportProvider;
}
