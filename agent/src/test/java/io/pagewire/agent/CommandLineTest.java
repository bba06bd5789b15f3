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
    void demoMigratesBetweenTwoJvmsAndVerifies(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
        Path lines = dir.resolve("stats.jsonl");
        Run r = run("demo", "--ram", "64M", "--json", "--stats-interval", "20ms", "--stats-file", lines.toString());
        assertEquals(0, r.exit, r.out + r.err);
        // --json: standard output is one JSON document and nothing else (pipes into jq).
        var doc = Json.parseObject(r.out, "demo --json output");
        assertEquals(Json.STATS_SCHEMA, doc.get("schema").asString());
        assertEquals("completed", doc.get("status").asString());
        assertTrue(doc.get("verified").asBoolean(), r.out);
        assertEquals(64L << 20, doc.get("ram").get("total").asLong());
        assertTrue(r.err.contains("destination pid"), "the human lines go to standard error: " + r.err);
        // The wall time broken into its parts, in the order they were spent, each a duration in ms.
        var phases = doc.get("phases");
        List<String> names = new java.util.ArrayList<>();
        phases.propertyNames().forEach(names::add);
        assertEquals(List.of("jvm-start", "destination-start", "warm-up", "populate", "setup", "rounds", "downtime", "verify", "other", "wall-time"),
                names, r.out);
        long sum = 0;
        for (String n : names.subList(0, names.size() - 1)) {
            assertTrue(phases.get(n).asLong() >= 0, n + " is a duration: " + phases);
            sum += phases.get(n).asLong();
        }
        assertEquals(doc.get("setup-time").asLong(), phases.get("setup").asLong(), phases.toString());
        assertTrue(sum <= phases.get("wall-time").asLong(), "the parts fit in the wall time: " + phases);
        // --stats-interval: JSON lines while it runs, the last one the final state.
        List<String> ticks = Files.readAllLines(lines);
        assertTrue(!ticks.isEmpty(), "at least the final line");
        for (String t : ticks) {
            assertEquals(Json.STATS_SCHEMA, Json.parseObject(t, "a stats line").get("schema").asString(), t);
        }
        assertEquals("completed", Json.parseObject(ticks.getLast(), "the last stats line").get("status").asString(), ticks.getLast());
    }

    @Test
    void verifiedIsAbsentWhenVerificationWasNotAsked() {
        Run r = run("demo", "--ram", "16M", "--json", "--no-verify", "--pattern", "idle");
        assertEquals(0, r.exit, r.out + r.err);
        var doc = Json.parseObject(r.out, "demo --json output");
        assertEquals("completed", doc.get("status").asString());
        assertTrue(!doc.has("verified") && !doc.has("verification"), "nothing was verified, so nothing is claimed: " + r.out);
    }

    @Test
    void snapshotThenRestoreByMapAndByLoad(@org.junit.jupiter.api.io.TempDir Path dir) {
        assumeSnapshotsOfShmem();
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

    /** The live snapshot needs synchronous userfaultfd write-protection of shmem (the memfd guest). */
    private static void assumeSnapshotsOfShmem() {
        String missing = io.pagewire.ramtracker.linux.Userfaultfd.missingFeatures(io.pagewire.ramtracker.snapshot.WriteProtectedRam.REQUIRED_FEATURES
                | io.pagewire.ramtracker.linux.Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM);
        org.junit.jupiter.api.Assumptions.assumeTrue(missing == null,
                "synchronous userfaultfd write-protection of shmem (UFFD_FEATURE_WP_UNPOPULATED, WP_HUGETLBFS_SHMEM): " + missing);
    }

    /** {@code restore --to}: a snapshot file becomes a stopped guest migrated onward to a {@code receive} in another JVM. */
    @Test
    void aRestoredSnapshotMigratesOnwardAndVerifies(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        assumeSnapshotsOfShmem();
        Path file = dir.resolve("g.pwsnap");
        Run r = run("snapshot", "--ram", "32M", "--vcpus", "1", "--dirty-rate", "0", "--working-set", "8M", "--warmup", "0.1",
                "--to", "file:" + file);
        assertEquals(0, r.exit, r.out + r.err);
        Process dst = new ProcessBuilder(ChildJvm.command(List.of("receive", "--listen", "tcp://127.0.0.1:0", "--ram", "32M")))
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        try {
            java.io.BufferedReader lines = new java.io.BufferedReader(new java.io.InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
            String listening = lines.readLine();
            assertTrue(listening != null && listening.startsWith("LISTENING "), "receive prints where it listens: " + listening);
            r = run("restore", file.toString(), "--to", listening.substring("LISTENING ".length()), "--json");
            assertEquals(0, r.exit, r.out + r.err);
            var doc = Json.parseObject(r.out, "restore --to --json output");
            assertEquals("completed", doc.get("status").asString(), r.out);
            assertTrue(doc.get("verified").asBoolean(), "the destination's RAM equals the restored image: " + r.out);
            assertEquals(32L << 20, doc.get("ram").get("total").asLong());
            assertTrue(r.err.contains("loaded into fresh memfd memory") && r.err.contains("RESTORED ok"), r.err);
            assertTrue(dst.waitFor(60, TimeUnit.SECONDS), "the destination ends after the migration");
            assertEquals(0, dst.exitValue());
        } finally {
            dst.destroyForcibly();
        }
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
        assertEquals(1, r.exit, "not a snapshot: the restore failed (exit 1), not a usage error");
        assertTrue(r.err.contains("not a pagewire snapshot"), r.err);
    }

    /** QEMU's default guest RAM (anonymous, transparent huge pages advised): migrated and verified; a bad combination refused. */
    @Test
    void guestRamOnAnonymousHugePagesMigratesAndVerifies() {
        Run r = run("demo", "--ram", "64M", "--json", "--backing", "anonymous", "--huge-pages", "--pattern", "random", "--dirty-rate", "32M",
                "--working-set", "16M");
        assertEquals(0, r.exit, r.out + r.err);
        var doc = Json.parseObject(r.out, "demo --json output");
        assertEquals("completed", doc.get("status").asString());
        assertTrue(doc.get("verified").asBoolean(), r.out);
        r = run("send", "--to", "tcp://127.0.0.1:1", "--ram", "1M", "--huge-pages");
        assertEquals(2, r.exit, r.out + r.err);
        assertTrue(r.err.contains("--huge-pages") && r.err.contains("--backing anonymous"), r.err);
        r = run("send", "--to", "tcp://127.0.0.1:1", "--ram", "1M", "--backing", "hugetlbfs");
        assertEquals(2, r.exit, r.out + r.err);
        assertTrue(r.err.contains("--backing hugetlbfs is not one of memfd, anonymous"), r.err);
    }

    @Test
    void aJitWarmUpOfPartPagesIsAUsageError() {
        Run r = run("send", "--to", "tcp://127.0.0.1:1", "--ram", "1M", "--jit-warm-up", "1000");
        assertEquals(2, r.exit, r.out + r.err);
        assertTrue(r.err.contains("--jit-warm-up 1000") && r.err.contains("4 KiB"), r.err);
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
            assertEquals(4, r.exit, "a migration that could not connect failed in the transport: exit 4");
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

    @Test
    void versionComesFromTheBuildOnEveryCommand() throws IOException {
        String built;
        try (var in = Files.newInputStream(Path.of("target", "classes", "io", "pagewire", "agent", "cli", "version.properties"))) {
            var p = new java.util.Properties();
            p.load(in);
            built = p.getProperty("version");
        }
        assertTrue(built != null && !built.contains("${"), "the build stamps the version: " + built);
        for (List<String> args : List.of(List.of("--version"), List.of("demo", "--version"), List.of("send", "--version"),
                List.of("receive", "--version"))) {
            Run r = run(args.toArray(String[]::new));
            assertEquals(0, r.exit, args.toString());
            assertTrue(r.out.startsWith("pagewire " + built + "\n"), args + ": " + r.out);
        }
    }

    @Test
    void durationsTakeTimeUnitsAndRefuseSizes() {
        Run r = run("send", "--to", "tcp://127.0.0.1:1", "--ram", "1M", "--downtime-limit", "1k");
        assertEquals(2, r.exit, r.err);
        assertTrue(r.err.contains("'1k' is not a duration") && r.err.contains("300ms"), r.err);
        r = run("receive", "--listen", "tcp://127.0.0.1:0", "--ram", "1M", "--accept-timeout", "10 parsecs");
        assertEquals(2, r.exit, r.err);
        assertTrue(r.err.contains("'10 parsecs' is not a duration"), r.err);
        Run help = run("send", "--help");
        assertTrue(help.out.contains("Exit codes:") && help.out.contains("4   transport error"), help.out);
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
