/**
 * The pagewire Aeron transport: {@code aeron:udp?endpoint=host:port} and {@code aeron:ipc}. Embedded media
 * drivers by default (one for the urgent lane, one for the bulk stream), or an external driver named by
 * {@code aeron.dir}. See {@code docs/aeron.md}.
 *
 * <p>Built on {@code aeron-client}, {@code aeron-driver} and {@code agrona} (automatic modules {@code io.aeron.client},
 * {@code io.aeron.driver}, {@code org.agrona}). Agrona 2.x needs {@code --add-opens java.base/jdk.internal.misc=org.agrona}
 * on the module path ({@code =ALL-UNNAMED} on the class path); the background threads' nice value and timer slack need
 * {@code --enable-native-access=io.pagewire.linux} (the native layer lives there).
 */
module io.pagewire.transport.aeron {
    requires io.pagewire.transport.spi;
    requires io.pagewire.linux;
    requires io.aeron.client;
    requires io.aeron.driver;
    requires org.agrona;

    provides io.pagewire.transport.spi.TransportProvider with io.pagewire.transport.aeron.AeronTransportProvider;
}
