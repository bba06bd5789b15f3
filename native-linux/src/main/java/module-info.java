/**
 * pagewire's one native layer (Linux): the only code that links C calls with {@code java.lang.foreign.Linker},
 * under the transports and the RAM tracker alike (Netty's {@code transport-native-unix-common} is the model).
 * Internal: exported only to pagewire's own modules, which need {@code --enable-native-access=io.pagewire.linux}
 * (module path) or {@code ALL-UNNAMED} (class path).
 */
module io.pagewire.linux {
    exports io.pagewire.linux to io.pagewire.transport.spi, io.pagewire.transport.tcp, io.pagewire.transport.unix,
            io.pagewire.transport.aeron, io.pagewire.ramtracker;
}
