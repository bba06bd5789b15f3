package io.pagewire.agent;

import io.pagewire.agent.cli.PagewireCommand;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The command line end to end: the demo starts a real destination JVM and migrates over real sockets. */
class CommandLineTest {

    private record Run(int exit, String out, String err) {
    }

    private static Run run(String... args) {
        CommandLine cl = PagewireCommand.commandLine();
        StringWriter err = new StringWriter();
        PrintWriter errWriter = new PrintWriter(err, true);
        cl.setErr(errWriter);
        StringWriter out = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        int exit = cl.execute(args);
        errWriter.flush();
        cl.getOut().flush();
        return new Run(exit, out.toString(), err.toString());
    }

    @Test
    void demoMigratesBetweenTwoJvmsAndVerifies() {
        Run r = run("demo", "--ram", "64M", "--json");
        assertEquals(0, r.exit, r.out + r.err);
        String json = r.out.lines().filter(l -> l.startsWith("{")).findFirst().orElseThrow(() -> new AssertionError(r.out));
        assertTrue(json.contains("\"status\":\"completed\"") && json.contains("\"verified\":true") && json.contains("\"total\":67108864"), json);
    }

    @Test
    void snapshotThenRestoreByMapAndByLoad(@org.junit.jupiter.api.io.TempDir Path dir) {
        String missing = io.pagewire.ramtracker.linux.Userfaultfd.missingFeatures(io.pagewire.ramtracker.snapshot.WriteProtectedRam.REQUIRED_FEATURES
                | io.pagewire.ramtracker.linux.Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM);
        org.junit.jupiter.api.Assumptions.assumeTrue(missing == null,
                "synchronous userfaultfd write-protection of shmem (UFFD_FEATURE_WP_UNPOPULATED, WP_HUGETLBFS_SHMEM): " + missing);
        Path file = dir.resolve("g.pwsnap");
        Run r = run("snapshot", "--ram", "32M", "--vcpus", "2", "--dirty-rate", "0", "--working-set", "8M", "--warmup", "0.1",
                "--to", "file:" + file + "?rate=64M", "--json");
        assertEquals(0, r.exit, r.out + r.err);
        assertTrue(r.out.contains("\"status\":\"completed\"") && r.out.contains("SNAPSHOT completed"), r.out);
        r = run("restore", file.toString());
        assertEquals(0, r.exit, r.out + r.err);
        assertTrue(r.out.contains("mapped MAP_PRIVATE") && r.out.contains("RESTORED ok"), r.out);
        r = run("restore", "--load", file.toString());
        assertEquals(0, r.exit, r.out + r.err);
        assertTrue(r.out.contains("loaded into fresh memory") && r.out.contains("RESTORED ok"), r.out);
    }

    @Test
    void badSnapshotOptionsAndFilesAreNamed(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
        Run r = run("snapshot", "--ram", "4M", "--policy", "fastest", "--to", "file:" + dir.resolve("x"));
        assertEquals(2, r.exit);
        assertTrue(r.err.contains("'fastest'") && r.err.contains("adaptive"), r.err);
        r = run("snapshot", "--ram", "4M", "--to", "file:" + dir.resolve("x") + "?speed=1M");
        assertEquals(2, r.exit);
        assertTrue(r.err.contains("'speed'") && r.err.contains("rate") && r.err.contains("latency"), r.err);
        Path junk = dir.resolve("junk");
        Files.write(junk, new byte[4096]);
        r = run("restore", junk.toString());
        assertEquals(2, r.exit);
        assertTrue(r.err.contains("not a pagewire snapshot"), r.err);
    }

    @Test
    void badUriIsAClearErrorNotAStackTrace() {
        Run r = run("send", "--to", "tcp://127.0.0.1:1?chanels=2", "--ram", "1M");
        assertEquals(2, r.exit);
        assertTrue(r.err.contains("unknown option 'chanels'") && r.err.contains("did you mean 'channels'"), r.err);
        r = run("send", "--to", "carrier-pigeon://x:1", "--ram", "1M");
        assertEquals(2, r.exit);
        assertTrue(r.err.contains("unknown transport scheme 'carrier-pigeon'") && r.err.contains("tcp"), r.err);
    }

    @Test
    void refusedConnectionSaysWhere() throws IOException {
        // A port bound but not listening refuses connections, and no one else can take it meanwhile
        // (closing a probe socket and reusing its number would race with other processes).
        try (java.net.Socket held = new java.net.Socket()) {
            held.bind(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0));
            int port = held.getLocalPort();
            Run r = run("send", "--to", "tcp://127.0.0.1:" + port, "--ram", "1M", "--pattern", "idle");
            assertEquals(1, r.exit, "a migration that could not connect has failed");
            assertTrue(r.out.contains("Migration status: failed") && r.out.contains("ECONNREFUSED") && r.out.contains("127.0.0.1:" + port), r.out);
        }
    }

    @Test
    void everyCommandHasHelp() {
        for (String cmd : List.of("demo", "send", "receive")) {
            Run r = run(cmd, "--help");
            assertEquals(0, r.exit, cmd);
            assertTrue(r.out.contains("Usage: pagewire " + cmd), "out=[" + r.out + "] err=[" + r.err + "]");
        }
        Run r = run("demo", "--ram", "lots");
        assertEquals(2, r.exit);
        assertTrue(r.err.contains("'lots' is not a size"), r.err);
    }

    /** The launcher's JDK discovery: with no JDK 25 anywhere it says what to install, before anything else runs. */
    @Test
    void jdkDiscoveryFailsWithInstallInstructions() throws Exception {
        Path script = Path.of("..", ".mvn", "find-jdk.sh").toAbsolutePath().normalize();
        assertTrue(Files.isRegularFile(script), script.toString());
        ProcessBuilder pb = new ProcessBuilder("sh", "-c", "set -euf; . \"$0\"; echo FOUND \"$JAVA_HOME\"", script.toString());
        Map<String, String> env = pb.environment();
        env.remove("JAVA_HOME");
        env.remove("PAGEWIRE_JAVA_HOME");
        env.put("PATH", "/usr/bin:/bin");
        env.put("HOME", "/nonexistent");
        env.put("PAGEWIRE_JDK_SEARCH", "/nonexistent/jdk*");
        Process p = pb.redirectErrorStream(true).start();
        String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        if (text.contains("FOUND")) {
            // A JDK 25 is the default java on this machine's PATH: discovery succeeding is right.
            assertEquals(0, p.exitValue(), text);
            return;
        }
        assertEquals(1, p.exitValue(), text);
        assertTrue(text.contains("needs JDK 25") && text.contains("temurin-25-jdk") && text.contains("PAGEWIRE_JAVA_HOME"), text);

        env.put("PAGEWIRE_JDK_SEARCH", System.getProperty("java.home"));
        p = pb.start();
        text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), text);
        assertTrue(text.contains("FOUND " + System.getProperty("java.home")), text);
    }
}
