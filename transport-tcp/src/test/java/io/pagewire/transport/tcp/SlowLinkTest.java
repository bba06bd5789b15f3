package io.pagewire.transport.tcp;

import io.pagewire.transport.spi.tck.TckPeer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Source and destination in two network namespaces joined by a veth pair shaped to 1 Gbit/s with
 * a classifying htb ({@code scripts/slow-link.sh}): pages cross the shaped link round after round
 * and the urgent lane answers a page request meanwhile. Timings are measured by the benchmark,
 * not here. Skips, naming the reason, without root or iproute2/tc.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class SlowLinkTest {
    private static final Path SCRIPT = Path.of("..", "scripts", "slow-link.sh").toAbsolutePath().normalize();
    private final List<Process> children = new ArrayList<>();
    /** A link of this JVM's own: tests of two clones running at once must not tear down each other's namespaces. */
    private static final String LINK_ID = Long.toString(ProcessHandle.current().pid() % 100_000_000L);

    private static ProcessBuilder script(String... args) {
        List<String> cmd = new ArrayList<>(List.of(SCRIPT.toString()));
        cmd.addAll(Arrays.asList(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().put("PAGEWIRE_LINK_ID", LINK_ID);
        return pb;
    }

    @BeforeEach
    void link() throws Exception {
        assumeTrue(Files.isExecutable(SCRIPT), "missing " + SCRIPT);
        Process up = script("up", "htb", "1gbit").redirectErrorStream(true).start();
        String out = new String(up.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int rc = up.waitFor();
        assumeTrue(rc != 3, () -> "slow link unavailable here: " + out.strip());
        assertEquals(0, rc, "slow-link.sh up failed: " + out);
    }

    @AfterEach
    void down() throws Exception {
        for (Process p : children) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
        if (Files.isExecutable(SCRIPT)) {
            assertEquals(0, script("down").inheritIO().start().waitFor());
        }
    }

    private Process peer(String namespace, String role, String uri) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("exec", namespace));
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(Arrays.asList(System.getProperty("pagewire.jvm.flags", "--enable-native-access=ALL-UNNAMED").trim().split("\\s+")));
        cmd.addAll(List.of("-Xmx256m", "-cp", System.getProperty("java.class.path"), TckPeer.class.getName(), role, uri, Long.toString(32L << 20),
                "5000", "500"));
        Process p = script(cmd.toArray(String[]::new)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        children.add(p);
        return p;
    }

    private static String await(BufferedReader r, String prefix) throws Exception {
        return CompletableFuture.supplyAsync(() -> {
            try {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.startsWith(prefix)) {
                        return line;
                    }
                }
                return null;
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }).get(60, TimeUnit.SECONDS);
    }

    @ParameterizedTest(name = "urgent-channel={0}")
    @ValueSource(strings = {"dedicated", "shared"})
    void pagesCrossTheShapedLinkAndTheUrgentLaneAnswers(String urgentChannel) throws Exception {
        Process dst = peer("dst", "dest", "tcp://10.77.0.2:0?urgent-channel=" + urgentChannel);
        BufferedReader dout = new BufferedReader(new InputStreamReader(dst.getInputStream(), StandardCharsets.UTF_8));
        String uri = await(dout, "LISTENING ").substring("LISTENING ".length());
        peer("src", "source", uri);
        assertNotNull(await(dout, "ACCEPTED"), "the source in pw-src reached the destination in pw-dst");
        assertNotNull(await(dout, "ANSWERED 1"), "the urgent lane answered the page request across the shaped link");
        assertNotNull(await(dout, "ROUND 2"), "two whole rounds of pages crossed the 1 Gbit/s link");
    }
}
