package io.pagewire.agent;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Runs one of the repository's Python programs ({@code conformance/*.py}) against {@code pagewire receive}
 * in child JVMs of the test JVM, echoing its output.
 */
final class PythonScript {
    private PythonScript() {
    }

    /** @return whether {@code python3} runs (tests that need it skip with assumeTrue otherwise) */
    static boolean python3() {
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

    /** The script's exit status and everything it printed. */
    record Result(int exit, String output) {
    }

    /**
     * Runs {@code python3 conformance/SCRIPT ARGS... -- <a pagewire receive --ram 64M in a child JVM>} to its end.
     *
     * @param script file name under conformance/
     * @param args the script's own arguments
     * @param tag prefix of the echoed lines
     */
    static Result run(String script, List<String> args, String tag) throws IOException, InterruptedException {
        Path path = Path.of("..", "conformance", script).toAbsolutePath().normalize();
        assertTrue(Files.isRegularFile(path), "missing: " + path);
        List<String> cmd = new ArrayList<>(List.of("python3", path.toString()));
        cmd.addAll(args);
        cmd.add("--");
        List<String> receiver = new ArrayList<>(ChildJvm.command(List.of("receive", "--ram", "64M")));
        // Receivers that run for seconds: C1 only, to start them quickly. (A class-data archive would help more, but
        // the JVM cannot dump one for a class path with directories.)
        receiver.add(1, "-XX:TieredStopAtLevel=1");
        cmd.addAll(receiver);
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        StringBuilder out = new StringBuilder();
        try (var r = p.inputReader(StandardCharsets.UTF_8)) {
            String line;
            while ((line = r.readLine()) != null) {
                System.out.println("[" + tag + "] " + line);
                out.append(line).append('\n');
            }
        }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), script + " did not end after its output did");
        System.out.println("[" + tag + "] whole run: " + TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t0) + " s");
        return new Result(p.exitValue(), out.toString());
    }
}
