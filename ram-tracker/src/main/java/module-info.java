/**
 * pagewire's RAM tracker: guest RAM regions, dirty bitmaps, dirty-log sources (userfaultfd +
 * PAGEMAP_SCAN, external KVM-format logs), zero and balloon page skipping, postcopy blocktime.
 *
 * <p>Native calls need {@code --enable-native-access=io.pagewire.linux,io.pagewire.ramtracker} (module path) or
 * {@code --enable-native-access=ALL-UNNAMED} (class path). The vectorised zero scan is used when
 * the JVM runs with {@code --add-modules jdk.incubator.vector}; without it a scalar scan is used.
 */
module io.pagewire.ramtracker {
    // Optional: the Vector API zero scanner is loaded only when the launcher adds the module.
    requires static jdk.incubator.vector;
    requires io.pagewire.linux;

    exports io.pagewire.ramtracker;
    exports io.pagewire.ramtracker.bitmap;
    exports io.pagewire.ramtracker.blocktime;
    exports io.pagewire.ramtracker.dirty;
    exports io.pagewire.ramtracker.linux;
    exports io.pagewire.ramtracker.postcopy;
    exports io.pagewire.ramtracker.scan;
    exports io.pagewire.ramtracker.snapshot;
}
