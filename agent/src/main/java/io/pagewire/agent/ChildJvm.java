package io.pagewire.agent;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Starts another {@code pagewire} command in a new JVM with this JVM's java, module or class
 * path and native-access flags (the demo's destination).
 */
public final class ChildJvm {
    private ChildJvm() {
    }

    /** @return the command line that runs {@code pagewire args...} in a new JVM like this one */
    public static List<String> command(List<String> args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("--add-modules")
                    || a.startsWith("-XX:") || a.startsWith("-Dpagewire")) {
                cmd.add(a);
            }
        }
        String modulePath = System.getProperty("jdk.module.path");
        if (modulePath != null && Main.class.getModule().isNamed()) {
            cmd.add("--module-path");
            cmd.add(modulePath);
            cmd.add("-m");
            cmd.add(Main.class.getModule().getName() + "/" + Main.class.getName());
        } else {
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add(Main.class.getName());
        }
        cmd.addAll(args);
        return cmd;
    }

    /** A started child and the first line it printed that starts with a prefix. */
    public record Started(Process process, String line) {
    }

    /**
     * Starts the child and waits for a line starting with {@code prefix} on its stdout; the
     * child's stderr goes to ours, less the JVM's incubator notice (see {@link #INCUBATOR_NOTICE}).
     */
    public static Started start(List<String> args, String prefix) throws IOException {
        Process p = new ProcessBuilder(command(args)).start();
        BufferedReader err = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8));
        Thread.ofPlatform().daemon().name("pagewire-child-stderr").start(() -> forwardStderr(err));
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String line;
        while ((line = r.readLine()) != null) {
            if (line.startsWith(prefix)) {
                Thread.ofPlatform().daemon().name("pagewire-child-output").start(() -> drain(r));
                return new Started(p, line);
            }
        }
        p.destroyForcibly();
        throw new IOException("the child JVM (" + String.join(" ", args) + ") ended without printing '" + prefix + "'");
    }

    /**
     * What every JVM started with {@code --add-modules jdk.incubator.vector} prints first on its
     * stderr. It tells a user nothing (the Vector API is an implementation detail of the zero
     * scan), so the launcher and this class drop exactly that line and nothing else.
     */
    public static final String INCUBATOR_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector";

    private static void forwardStderr(BufferedReader err) {
        try {
            String line;
            while ((line = err.readLine()) != null) {
                if (!line.equals(INCUBATOR_NOTICE)) {
                    System.err.println(line);
                }
            }
        } catch (IOException e) {
            System.err.println("  [destination] stderr ended: " + e.getMessage());
        }
    }

    private static void drain(BufferedReader r) {
        try {
            String line;
            while ((line = r.readLine()) != null) {
                System.out.println("  [destination] " + line);
            }
        } catch (IOException e) {
            System.err.println("  [destination] output ended: " + e.getMessage());
        }
    }
}
