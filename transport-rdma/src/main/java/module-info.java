/**
 * The pagewire RDMA transport: one-sided RDMA WRITE through DiSNi, or over the in-process
 * simulated fabric ({@code -Dpagewire.rdma.fabric=simulated}; a test fixture in this module's
 * test-jar). Nothing is exported: the transport is found as a service by its URI scheme.
 *
 * <p>DiSNi is a static (optional) dependency: the module resolves and works over the simulated
 * fabric without it; for real RDMA on the module path add {@code --add-modules disni}.
 */
module io.pagewire.transport.rdma {
    requires transitive io.pagewire.transport.spi;
    requires static disni;


    provides io.pagewire.transport.spi.TransportProvider with io.pagewire.transport.rdma.RdmaTransportProvider;
}
