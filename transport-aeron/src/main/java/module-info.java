/**
 * The pagewire Aeron transport: {@code aeron:udp?endpoint=host:port} and {@code aeron:ipc}. Embedded media
 * drivers by default (one for the urgent lane, one for the bulk stream), or an external driver named by
 * {@code aeron.dir}. See {@code docs/aeron.md}.
 *
 * <p>Needs {@code --add-opens java.base/jdk.internal.misc=io.aeron.all} on the module path (Agrona 2.x, bundled in
 * aeron-all) and {@code --enable-native-access=io.pagewire.transport.aeron} for the background threads' nice value.
 */
module io.pagewire.transport.aeron {
    requires io.pagewire.transport.spi;
    requires io.aeron.all;

    provides io.pagewire.transport.spi.TransportProvider with io.pagewire.transport.aeron.AeronTransportProvider;
}
