package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
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
 * The wire protocol's conformance suite ({@code conformance/pagewire_conformance.py}): a second
 * implementation of the source side, in Python and written from docs/wire-protocol.md alone, run
 * against the real {@code pagewire receive} in child JVMs of this one (one per case: a legitimate
 * migration with verification, the handshake's refusals, hostile frames by category). Any change that
 * makes the document and the receiver disagree fails here.
 */
@Timeout(value = 900, unit = TimeUnit.SECONDS)
class ConformanceSuiteTest {

    private static boolean python3() {
        try {
            Process p = new ProcessBuilder("python3", "--version").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    @Test
    void theReceiverMeetsTheDocumentAsASecondImplementationSpeaksIt() throws Exception {
        assumeTrue(python3(), "python3 is not on the PATH: the conformance suite is a Python program");
        Path script = Path.of("..", "conformance", "pagewire_conformance.py").toAbsolutePath().normalize();
        assertTrue(Files.isRegularFile(script), "the conformance suite is missing: " + script);
        List<String> cmd = new ArrayList<>(List.of("python3", script.toString(), "--jobs", "2", "--"));
        List<String> receiver = new ArrayList<>(ChildJvm.command(List.of("receive", "--ram", "64M")));
        // Dozens of short-lived receivers, each running for a second or two: C1 only, to start them quickly.
        // (A class-data archive would help more, but the JVM cannot dump one for a class path with directories.)
        receiver.add(1, "-XX:TieredStopAtLevel=1");
        cmd.addAll(receiver);
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        StringBuilder out = new StringBuilder();
        try (var r = p.inputReader(StandardCharsets.UTF_8)) {
            String line;
            while ((line = r.readLine()) != null) {
                System.out.println("[conformance] " + line);
                out.append(line).append('\n');
            }
        }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the suite did not end after its output did");
        long seconds = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t0);
        System.out.println("[conformance] whole suite: " + seconds + " s");
        assertEquals(0, p.exitValue(), "conformance failures:\n" + out);
        assertTrue(out.toString().contains("PASSED:"), out.toString());
    }
}
