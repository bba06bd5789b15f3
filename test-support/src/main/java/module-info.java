/**
 * Build-time test support, not part of the product: the hang watchdog that every module's tests
 * run with (see {@link io.pagewire.testsupport.HangWatchdog}).
 */
module io.pagewire.testsupport {
    requires org.junit.jupiter.api;
    requires org.junit.platform.launcher;
    requires java.management;

    exports io.pagewire.testsupport;

    provides org.junit.platform.launcher.LauncherSessionListener with io.pagewire.testsupport.HangWatchdog;
    provides org.junit.platform.launcher.TestExecutionListener with io.pagewire.testsupport.HangWatchdog;
}
