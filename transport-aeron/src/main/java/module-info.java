/** The pagewire Aeron transport (issue 6 fills it): Aeron UDP and IPC with an embedded media driver. */
module io.pagewire.transport.aeron {
    requires io.pagewire.transport.spi;
}
