package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The agent on the module path, as the {@code pagewire} launcher runs it: {@code pagewire demo} in a child JVM started
 * with {@code --module-path ... -m io.pagewire.agent/io.pagewire.agent.Main} and the module-path flags, whose own
 * destination JVM (started by {@link ChildJvm} from there, through {@code jdk.module.path}) runs on the module path
 * too. Proves that every module resolves (HdrHistogram, picocli, DiSNi, Aeron and Agrona as automatic modules, no
 * split package), that the transports are found as services, and that the native-access and Agrona flags name the
 * right modules: a missing one is a JVM warning (restricted method) or, for Agrona, an unavailable Aeron transport.
 */
class ModulePathTest {

    @Test
    void childrenRunOnTheModulePathTheBuildGives() {
        assertNotNull(System.getProperty(ChildJvm.MODULE_PATH_PROPERTY),
                "the agent's pom sets " + ChildJvm.MODULE_PATH_PROPERTY + " for its tests");
        List<String> cmd = ChildJvm.command(List.of("demo"));
        int m = cmd.indexOf("-m");
        assertTrue(m > 0 && cmd.contains("--module-path"), cmd::toString);
        assertEquals("io.pagewire.agent/io.pagewire.agent.Main", cmd.get(m + 1));
        assertTrue(cmd.stream().noneMatch(a -> a.contains("ALL-UNNAMED")), () -> "module-path flags name modules: " + cmd);
        assertTrue(cmd.contains("--add-opens=java.base/jdk.internal.misc=org.agrona"), cmd::toString);
    }

    @ParameterizedTest
    @ValueSource(strings = {"tcp://127.0.0.1:0", "aeron:ipc", "aeron:udp?endpoint=127.0.0.1:0"})
    void demoRunsOnTheModulePath(String uri) throws Exception {
        Process p = new ProcessBuilder(ChildJvm.command(List.of("demo", "--uri", uri, "--ram", "32M", "--pattern", "idle"))).start();
        try {
            CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()));
            String out = readAll(p.getInputStream());
            assertTrue(p.waitFor(50, TimeUnit.SECONDS), "demo still running: " + out);
            String stderr = err.get(10, TimeUnit.SECONDS);
            assertEquals(0, p.exitValue(), () -> "exit " + p.exitValue() + "\nstdout:\n" + out + "\nstderr:\n" + stderr);
            assertTrue(out.contains("Migration status: completed") && out.contains("verified: true")
                    && out.contains("[destination] RECEIVED verified"), out);
            for (String line : stderr.lines().toList()) {
                assertTrue(!line.contains("restricted method") && !line.contains("enable-native-access") && !line.contains("Unknown module")
                        && !line.contains("add-opens") && !line.contains("IllegalAccess"), () -> "module-path flag missing or wrong: " + stderr);
            }
        } finally {
            p.destroyForcibly();
        }
    }

    private static String readAll(InputStream in) {
        try {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
