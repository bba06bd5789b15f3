package io.pagewire.ramtracker.hang;

import io.pagewire.ramtracker.linux.Userfaultfd;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.platform.launcher.LauncherSession;
import org.junit.platform.launcher.core.LauncherFactory;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectMethod;
import static org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder.request;

/**
 * The build's hang guard (test-support's HangWatchdog) against the two hangs it exists for, each
 * in a child JVM that runs one of {@link HangFixtures}: the child must die within its bound and
 * leave a dump that names the guilty thread.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class HangWatchdogTest {

    /** The child JVM: runs one fixture method under JUnit, with the watchdog registered as in the build. */
    public static void main(String[] args) {
        try (LauncherSession session = LauncherFactory.openSession()) {
            session.getLauncher().execute(request().selectors(selectMethod(HangFixtures.class, args[0])).build());
        }
        System.exit(0);
    }

    private static Process child(Path dir, String method, String... props) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java")));
        cmd.addAll(Arrays.asList(System.getProperty("pagewire.jvm.flags", "--enable-native-access=ALL-UNNAMED").trim().split("\\s+")));
        cmd.addAll(List.of("-Xmx128m", "-Dpagewire.watchdog.dir=" + dir, "-Dpagewire.watchdog.buildLog=none"));
        cmd.addAll(Arrays.asList(props));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), HangWatchdogTest.class.getName(), method));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("child.log").toFile()).start();
    }

    @Test
    void aJvmStoppedAtASafepointIsDumpedFromOutsideAndKilled(@TempDir Path dir) throws Exception {
        assumeTrue(Userfaultfd.isAvailable(), () -> "userfaultfd unavailable: " + Userfaultfd.unavailabilityCause());
        Process p = child(dir, "javaCodeFaultsOnRegisteredMemory", "-Dpagewire.fixture.safepoint=true", "-Dpagewire.watchdog.stallSeconds=5");
        assertTrue(p.waitFor(150, TimeUnit.SECONDS), "the stalled child was not killed");
        assertEquals(137, p.exitValue(), "killed with SIGKILL: " + Files.readString(dir.resolve("child.log")));
        Path dump = dir.resolve("stalled-jvm-" + p.pid() + ".txt");
        String text = Files.readString(dump, StandardCharsets.UTF_8);
        assertTrue(text.contains("made no progress"), text);
        assertTrue(text.contains("faulting-vcpu"), "the faulting thread is named: " + text);
        if (Files.isReadable(Path.of("/proc/self/stack"))) {
            assertTrue(text.contains("handle_userfault"), "its kernel stack shows the fault: " + text);
        }
    }

    @Test
    void aTestThatIgnoresItsTimeoutIsDumpedAndTheJvmHalted(@TempDir Path dir) throws Exception {
        Process p = child(dir, "ignoresTheInterrupt", "-Dpagewire.fixture.spin=true", "-Dpagewire.watchdog.graceSeconds=2");
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the child was not halted");
        assertEquals(3, p.exitValue(), Files.readString(dir.resolve("child.log")));
        String text = Files.readString(dir.resolve("timeout-" + p.pid() + ".txt"), StandardCharsets.UTF_8);
        assertTrue(text.contains("ignoresTheInterrupt()") && text.contains("past its timeout"), text);
        assertTrue(text.contains("HangFixtures.ignoresTheInterrupt"), "the test's own frame is in the dump: " + text);
    }
}
