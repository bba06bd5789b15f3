package io.pagewire.perf.e2e;

import io.pagewire.agent.Json;
import io.pagewire.perf.BenchCli;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Two-host benchmarking with the hosts played by two JVMs: {@code bench --serve} in a child JVM,
 * {@code bench --to} with a sweep in this one, real sockets; then the HTML report it wrote is
 * opened in a real headless browser (Chromium), which must draw every chart without a script error.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class TwoHostBenchTest {

    @Test
    void serveAndToMeasureEveryUriOfTheSweepAndWriteAReportThatRenders(@TempDir Path dir) throws Exception {
        Process server = serve("tcp://127.0.0.1:0", "--iperf", "false");
        try {
            String uri = listening(server);

            Path reports = dir.resolve("reports");
            int rc = BenchCli.commandLine(new TransportBench()).execute("--to", uri, "--bytes", "16m", "--runs", "1", "--rtt", "20",
                    "--iperf", "false", "--sweep", "channels=1,2", "--out", reports.toString());
            assertEquals(0, rc);
            assertTrue(server.isAlive(), "the server serves one source after another");

            Path json;
            try (var files = Files.list(reports)) {
                json = files.filter(f -> f.getFileName().toString().endsWith(".json")).findFirst().orElseThrow();
            }
            JsonNode data = Json.parseObject(Files.readString(json), "the report's raw results");
            JsonNode uris = data.get("results").get("uris");
            assertEquals(2, uris.size(), uris.toString());
            assertTrue(uris.get(0).get("uri").asString().endsWith("channels=1") && uris.get(1).get("uri").asString().endsWith("channels=2"),
                    uris.toString());
            for (JsonNode u : uris) {
                assertTrue(u.get("gbps").get(0).asDouble() > 0, u.toString());
                assertEquals(20, u.get("urgent-rtt-idle-us").get("count").asLong(), u.toString());
            }
            Path html = Path.of(json.toString().replaceAll("\\.json$", ".html"));
            assertRendersInChromium(html, 3);
        } finally {
            server.destroyForcibly();
            server.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** {@code bench --serve} in a child JVM (the other host). */
    private static Process serve(String listen, String... more) throws IOException {
        List<String> cmd = new ArrayList<>(jvm());
        cmd.addAll(List.of(TransportBench.class.getName(), "--serve", "--listen", listen, "--bytes", "16m"));
        cmd.addAll(List.of(more));
        return new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    }

    /** @return the URI the server listens on, from its first line */
    private static String listening(Process server) throws IOException {
        BufferedReader out = new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
        String line = out.readLine();
        assertTrue(line != null && line.startsWith("LISTENING "), "the server prints where it listens: " + line);
        return line.substring("LISTENING ".length());
    }

    /**
     * {@code aeron:}: the reference is Aeron's own StreamingPublisher (here) to its RateSubscriber (started by
     * {@code bench --serve} there), both unmodified from the aeron-all jar; its figure lands in the report.
     */
    @Test
    void anAeronSourceMeasuresAeronsOwnSamplesAsTheReference(@TempDir Path dir) throws Exception {
        int referencePort;
        try (DatagramSocket s = new DatagramSocket(0, InetAddress.getLoopbackAddress())) {
            referencePort = s.getLocalPort(); // free now; the server binds it a moment later
        }
        Process server = serve("aeron:udp?endpoint=127.0.0.1:0", "--aeron-reference-port", Integer.toString(referencePort));
        try {
            String uri = listening(server);
            Path reports = dir.resolve("reports");
            int rc = BenchCli.commandLine(new TransportBench()).execute("--to", uri, "--bytes", "16m", "--runs", "1", "--rtt", "20",
                    "--aeron-reference-port", Integer.toString(referencePort), "--aeron-reference-messages", "20000",
                    "--out", reports.toString());
            assertEquals(0, rc);
            Path json;
            try (var files = Files.list(reports)) {
                json = files.filter(f -> f.getFileName().toString().endsWith(".json")).findFirst().orElseThrow();
            }
            String reference = Json.parseObject(Files.readString(json), "the report's raw results").get("facts").get("reference").asString();
            assertTrue(reference.matches("Aeron's StreamingPublisher to RateSubscriber at aeron:udp\\?endpoint=127\\.0\\.0\\.1:"
                    + referencePort + " .*: [0-9]+\\.[0-9]{2} GB/s .*"), reference);
            assertTrue(!reference.contains(": 0.00 GB/s"), "the reference moved data: " + reference);
        } finally {
            server.destroy(); // its shutdown hook stops the RateSubscriber
            server.waitFor(10, TimeUnit.SECONDS);
            server.destroyForcibly();
        }
    }

    /**
     * Whole migrations across hosts: {@code MigrationBench --serve} in a child JVM receives what {@code MigrationBench --to}
     * sends (warm-ups and one case), every migration verified; a malformed command is refused by name, not fatal.
     */
    @Test
    void migrationBenchServeAndToRunWholeMigrationsAcrossTheControlConnection(@TempDir Path dir) throws Exception {
        List<String> cmd = new ArrayList<>(jvm());
        cmd.addAll(List.of(MigrationBench.class.getName(), "--serve", "--control", "127.0.0.1:0", "--max-ram", "4g"));
        Process server = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
            String line = out.readLine();
            assertTrue(line != null && line.startsWith("SERVING 127.0.0.1:"), "the server prints its control address: " + line);
            String control = line.substring("SERVING ".length());
            try (java.net.Socket s = new java.net.Socket("127.0.0.1", Integer.parseInt(control.substring(control.lastIndexOf(':') + 1)))) {
                java.io.PrintWriter w = new java.io.PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8);
                BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
                w.println("receive tcp://127.0.0.1:0 99999999999999 hinted");
                String refused = r.readLine();
                assertTrue(refused != null && refused.startsWith("ERROR RAM 99999999999999 is outside") && refused.contains("--max-ram"), refused);
                w.println("exit");
            }
            Path reports = dir.resolve("reports");
            int rc = BenchCli.commandLine(new MigrationBench()).execute("--to", control, "--cases", "never-written-4g", "--runs", "1",
                    "--out", reports.toString());
            assertEquals(0, rc, "every migration completed and verified (MigrationBench fails otherwise)");
            try (var files = Files.list(reports)) {
                Path json = files.filter(f -> f.getFileName().toString().endsWith(".json")).findFirst().orElseThrow();
                String destination = Json.parseObject(Files.readString(json), "the report's raw results").get("facts").get("destination").asString();
                assertEquals("MigrationBench --serve at " + control + " (its own --dst-backing)", destination);
            }
            assertTrue(server.isAlive(), "the server serves one source after another");
        } finally {
            server.destroyForcibly();
            server.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** @return this JVM's java command, its native-access/opens/modules flags and class path */
    private static List<String> jvm() {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElseThrow());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("--add-modules")) {
                cmd.add(a);
            }
        }
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path")));
        return cmd;
    }

    /** Opens {@code html} in headless Chromium: {@code charts} charts drawn as SVG, no script error. */
    static void assertRendersInChromium(Path html, int charts) throws Exception {
        String chromium = List.of("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome").stream()
                .filter(p -> Files.isExecutable(Path.of(p))).findFirst().orElse(null);
        assumeTrue(chromium != null, "no headless browser: apt-get install chromium to check the HTML report renders");
        Path profile = Files.createTempDirectory(html.getParent(), "chromium-profile");
        Process p = new ProcessBuilder(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
                "--virtual-time-budget=5000", "--dump-dom", html.toUri().toString()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        String dom = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "chromium did not finish");
        assertTrue(dom.contains("data-charts-rendered=\"" + charts + "\""), "every chart drawn: " + dom.substring(0, Math.min(dom.length(), 2000)));
        assertTrue(!dom.contains("class=\"failed\""), "no script error: " + dom.substring(0, Math.min(dom.length(), 4000)));
        long svgs = dom.split("<svg", -1).length - 1;
        assertTrue(svgs >= charts, "each chart is an SVG: " + svgs);
    }
}
