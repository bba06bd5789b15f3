/** The pagewire RDMA transport (issue 7 fills it): one-sided RDMA WRITE through DiSNi. */
module io.pagewire.transport.rdma {
    requires io.pagewire.transport.spi;
}
