package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.disni.DisniProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The real (DiSNi) path on a machine without RDMA: {@code rdma://} fails at once, saying what is
 * missing and how to get it, and the DiSNi implementation is never loaded. Runs in child JVMs
 * with the default fabric (the test JVM uses the simulated one).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DisniUnavailableTest {

    private record Run(int exit, String out) {
        String line(String prefix) {
            return out.lines().filter(l -> l.startsWith(prefix)).findFirst().map(l -> l.substring(prefix.length())).orElse(null);
        }
    }

    private static Run child(boolean withDisni, String... args) throws Exception {
        String cp = Arrays.stream(System.getProperty("java.class.path").split(File.pathSeparator))
                .filter(e -> withDisni || !new File(e).getName().startsWith("disni"))
                .collect(Collectors.joining(File.pathSeparator));
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(Arrays.asList(System.getProperty("pagewire.jvm.flags", "--enable-native-access=ALL-UNNAMED").trim().split("\\s+")));
        cmd.add("-Xmx128m");
        cmd.add("-Xlog:class+load=info:file=" + File.createTempFile("classload", ".log").getAbsolutePath());
        cmd.add("-cp");
        cmd.add(cp);
        for (String a : args) {
            if (a.startsWith("-D")) {
                cmd.add(a);
            }
        }
        cmd.add(ChildMain.class.getName());
        for (String a : args) {
            if (!a.startsWith("-D")) {
                cmd.add(a);
            }
        }
        String log = cmd.stream().filter(c -> c.startsWith("-Xlog")).findFirst().orElseThrow().replaceFirst(".*file=", "");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        long t0 = System.nanoTime();
        byte[] out = p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child did not end");
        String classes = java.nio.file.Files.readString(java.nio.file.Path.of(log));
        new File(log).delete();
        System.out.println("child " + Arrays.toString(args) + " ran " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0) + " ms");
        return new Run(p.exitValue(), new String(out, StandardCharsets.UTF_8) + "\nCLASSES\n" + classes);
    }

    @Test
    void withoutLibdisniOrADeviceRdmaFailsAtOnceSayingWhatIsMissing() throws Exception {
        assumeTrue(DisniProbe.unavailabilityCause() != null, "this machine has RDMA: the unavailability message cannot be observed");
        Run r = child(true, "connect");
        assertEquals(0, r.exit(), r.out());
        assertEquals("UNAVAILABLE", r.line("KIND "), r.out());
        String m = r.line("MESSAGE ");
        for (String must : List.of("libdisni", "java.library.path", "make", "no RDMA device", "/sys/class/infiniband",
                "rdma link add rxe0 type rxe netdev <if>", "docs/rdma.md")) {
            assertTrue(m.contains(must), "the message should mention '" + must + "': " + m);
        }
        if (!new File("/usr/lib/x86_64-linux-gnu/libibverbs.so.1").exists() && !new File("/usr/lib64/libibverbs.so.1").exists()) {
            assertTrue(m.contains("rdma-core"), "missing libibverbs should point at rdma-core: " + m);
        }
        assertFalse(r.out().contains("io.pagewire.transport.rdma.disni.DisniFabric"), "the DiSNi fabric must not be loaded");
        assertFalse(r.out().contains("com.ibm.disni.verbs.impl.NativeDispatcher"), "DiSNi's native part must not be touched");
    }

    @Test
    void withoutTheDisniJarTheMessageSaysSoAndTheSimulatedFabricStillWorks() throws Exception {
        Run r = child(false, "connect");
        assertEquals("UNAVAILABLE", r.line("KIND "), r.out());
        assertTrue(r.line("MESSAGE ").contains("DiSNi jar (com.ibm.disni:disni:2.1) is not on the class path"), r.out());
        Run sim = child(false, "-Dpagewire.rdma.fabric=simulated", "sim");
        assertEquals(0, sim.exit(), sim.out());
        assertEquals("256 7", sim.line("SIM "), sim.out());
        assertFalse(sim.out().contains("com.ibm.disni"), "no DiSNi class is needed for the simulated fabric");
    }
}
