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

    /**
     * The launcher's warm start: {@code aot-training} on the module path with {@code -XX:AOTCacheOutput} completes its
     * loopback migrations (both sides in one JVM) and leaves a cache, and a JVM with {@code -XX:AOTMode=on} (which
     * refuses to start when the cache cannot be used) then runs a command with it.
     */
    @Test
    @org.junit.jupiter.api.Timeout(value = 120, unit = TimeUnit.SECONDS)
    void theAotTrainingRunMakesACacheTheCommandsStartWith(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path cache = dir.resolve("pagewire.aot");
        Run train = run(List.of("-XX:AOTCacheOutput=" + cache), List.of("aot-training", "--ram", "32M"), 100);
        assertEquals(0, train.rc(), train::toString);
        assertTrue(java.nio.file.Files.size(cache) > 0, train::toString);
        Run use = run(List.of("-XX:AOTMode=on", "-XX:AOTCache=" + cache), List.of("send", "--help"), 30);
        assertEquals(0, use.rc(), use::toString);
        assertTrue(use.out().contains("--to=URI"), use::toString);
    }

    private record Run(int rc, String out, String err) {
    }

    /** {@code pagewire args} in a child JVM on the module path, {@code jvmFlags} added; stdout and stderr collected. */
    private static Run run(List<String> jvmFlags, List<String> args, int seconds) throws Exception {
        List<String> cmd = new java.util.ArrayList<>(ChildJvm.command(args));
        cmd.addAll(1, jvmFlags);
        cmd.addAll(1, List.of("-Xlog:disable", "-Xlog:all=warning:stderr"));
        Process p = new ProcessBuilder(cmd).start();
        try {
            CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()));
            String out = readAll(p.getInputStream());
            assertTrue(p.waitFor(seconds, TimeUnit.SECONDS), () -> String.join(" ", cmd) + " still running: " + out);
            return new Run(p.exitValue(), out, err.get(10, TimeUnit.SECONDS));
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
