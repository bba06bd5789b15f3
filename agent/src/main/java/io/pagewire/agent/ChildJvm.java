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
 *
 * <p>The child runs as this JVM does: on the module path ({@code -m io.pagewire.agent/...}) when this
 * JVM runs the agent as a named module (the {@code pagewire} launcher), else on this JVM's class
 * path. {@value #MODULE_PATH_PROPERTY} (with {@value #JVM_FLAGS_PROPERTY}) puts the child on the module
 * path whatever this JVM runs on: the build sets both for the agent's tests, which run on the class
 * path, so that their destination JVMs start exactly as the launcher's do.
 */
public final class ChildJvm {
    private ChildJvm() {
    }

    /** System property: a module path for the child (which then runs {@code -m io.pagewire.agent/io.pagewire.agent.Main}). */
    public static final String MODULE_PATH_PROPERTY = "pagewire.child.module-path";

    /**
     * System property, read with {@value #MODULE_PATH_PROPERTY}: the child's JVM flags (space separated) in place of
     * this JVM's {@code --enable-native-access}, {@code --add-opens}, {@code --add-modules} and {@code -XX:} flags, which
     * name {@code ALL-UNNAMED} on a class path and modules on a module path.
     */
    public static final String JVM_FLAGS_PROPERTY = "pagewire.child.jvm-flags";

    /** The agent's module name (also when this JVM runs it from the class path, in the unnamed module). */
    static final String MODULE = "io.pagewire.agent";

    /** @return the command line that runs {@code pagewire args...} in a new JVM like this one */
    public static List<String> command(List<String> args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        String modulePath = System.getProperty(MODULE_PATH_PROPERTY);
        boolean ownFlags = modulePath == null;
        if (ownFlags) {
            modulePath = Main.class.getModule().isNamed() ? System.getProperty("jdk.module.path") : null;
        } else {
            for (String f : System.getProperty(JVM_FLAGS_PROPERTY, "").trim().split("\\s+")) {
                if (!f.isEmpty()) {
                    cmd.add(f);
                }
            }
        }
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            boolean jvmFlag = a.startsWith("--enable-native-access") || a.startsWith("--add-opens") || a.startsWith("--add-modules")
                    || a.startsWith("-XX:");
            if (a.startsWith("-Dpagewire") || (ownFlags && jvmFlag)) {
                cmd.add(a);
            }
        }
        if (modulePath != null) {
            cmd.add("--module-path");
            cmd.add(modulePath);
            cmd.add("-m");
            cmd.add(MODULE + "/" + Main.class.getName());
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
        return start(args, prefix, System.out);
    }

    /**
     * As {@link #start(List, String)}, the child's later standard output going to {@code rest} (the demo
     * with {@code --json} keeps its own standard output for the one JSON document).
     */
    public static Started start(List<String> args, String prefix, java.io.PrintStream rest) throws IOException {
        Process p = new ProcessBuilder(command(args)).start();
        BufferedReader err = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8));
        Thread.ofPlatform().daemon().name("pagewire-child-stderr").start(() -> forwardStderr(err));
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String line;
        while ((line = r.readLine()) != null) {
            if (line.startsWith(prefix)) {
                Thread.ofPlatform().daemon().name("pagewire-child-output").start(() -> drain(r, rest));
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

    private static void drain(BufferedReader r, java.io.PrintStream rest) {
        try {
            String line;
            while ((line = r.readLine()) != null) {
                rest.println("  [destination] " + line);
            }
        } catch (IOException e) {
            System.err.println("  [destination] output ended: " + e.getMessage());
        }
    }
}
