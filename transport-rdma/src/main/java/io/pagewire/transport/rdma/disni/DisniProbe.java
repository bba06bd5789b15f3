package io.pagewire.transport.rdma.disni;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Checks, once, whether real RDMA can run here, without touching any DiSNi class: the DiSNi jar,
 * its native library {@code libdisni}, rdma-core's {@code libibverbs} and {@code librdmacm}, and
 * an RDMA device. Reports everything that is missing at once, with what to do about each.
 */
public final class DisniProbe {
    private DisniProbe() {
    }

    private static final String DISNI_CLASS = "com.ibm.disni.verbs.RdmaEventChannel";
    private static final List<String> SYSTEM_LIB_DIRS = List.of("/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/lib64",
            "/lib64", "/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu");

    private static volatile String cause;
    private static volatile boolean probed;

    /** @return null when DiSNi can run here, else what is missing and how to get it (probed once) */
    public static String unavailabilityCause() {
        if (!probed) {
            synchronized (DisniProbe.class) {
                if (!probed) {
                    cause = probe(System.getProperty("java.library.path", ""), Path.of("/sys/class/infiniband"));
                    probed = true;
                }
            }
        }
        return cause;
    }

    /**
     * The probe itself, with its inputs explicit (for tests).
     *
     * @param libraryPath {@code java.library.path}
     * @param deviceDir where RDMA devices are listed ({@code /sys/class/infiniband})
     */
    static String probe(String libraryPath, Path deviceDir) {
        List<String> missing = new ArrayList<>();
        boolean jar = isDisniJarPresent();
        if (!jar) {
            missing.add("the DiSNi jar (com.ibm.disni:disni:2.1) is not on the class path; it comes with pagewire's transport-rdma"
                    + " dependencies (on the module path add '--add-modules disni')");
        }
        Set<String> dirs = new LinkedHashSet<>();
        for (String d : libraryPath.split(File.pathSeparator)) {
            if (!d.isBlank()) {
                dirs.add(d);
            }
        }
        dirs.addAll(SYSTEM_LIB_DIRS);
        Path disni = find(dirs, System.mapLibraryName("disni"));
        if (disni == null) {
            missing.add("libdisni (DiSNi's native library, not on Maven Central) is not on java.library.path (" + libraryPath
                    + ") nor in the system library directories; build it from DiSNi 2.1's source (github.com/zrlio/disni, directory"
                    + " libdisni: ./autoprepare.sh && ./configure --with-jdk=$JAVA_HOME && make && sudo make install) and run with"
                    + " -Djava.library.path=/usr/local/lib");
        }
        boolean verbs = find(dirs, "libibverbs.so.1") != null;
        boolean cm = find(dirs, "librdmacm.so.1") != null;
        if (!verbs || !cm) {
            missing.add((verbs ? "" : "libibverbs.so.1 ") + (cm ? "" : "librdmacm.so.1 ") + "not found: install rdma-core's user-space"
                    + " libraries (Debian/Ubuntu: apt-get install rdma-core libibverbs1 librdmacm1 ibverbs-providers; RHEL: dnf install rdma-core"
                    + " libibverbs librdmacm)");
        }
        if (disni != null && verbs && cm) {
            String loadError = tryLoad(disni);
            if (loadError != null) {
                missing.add("libdisni at " + disni + " does not load: " + loadError + " (rebuild it against this system's rdma-core)");
            }
        }
        if (!hasDevice(deviceDir)) {
            missing.add("no RDMA device: " + deviceDir + " is " + (Files.isDirectory(deviceDir) ? "empty" : "missing")
                    + " (this kernel has no RDMA support or no RDMA NIC is present); for a first try without an RDMA NIC, load Soft-RoCE over"
                    + " an Ethernet interface: 'modprobe rdma_rxe; rdma link add rxe0 type rxe netdev <if>'");
        }
        if (missing.isEmpty()) {
            return null;
        }
        StringBuilder sb = new StringBuilder("rdma:// needs DiSNi over libibverbs and an RDMA device; missing here:");
        for (int i = 0; i < missing.size(); i++) {
            sb.append(" (").append(i + 1).append(") ").append(missing.get(i)).append(i + 1 < missing.size() ? ";" : ".");
        }
        sb.append(" See docs/rdma.md. Without RDMA hardware, tests and benchmarks run over the in-process fabric: -D"
                + "pagewire.rdma.fabric=simulated.");
        return sb.toString();
    }

    static boolean isDisniJarPresent() {
        try {
            Class.forName(DISNI_CLASS, false, DisniProbe.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException e) {
            return false; // the answer to the question, not an error
        }
    }

    private static Path find(Set<String> dirs, String file) {
        for (String d : dirs) {
            Path p = Path.of(d, file);
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        return null;
    }

    /** @return null when the library loads, else the loader's message */
    private static String tryLoad(Path lib) {
        try {
            System.load(lib.toAbsolutePath().toString());
            return null;
        } catch (UnsatisfiedLinkError e) {
            return e.getMessage();
        }
    }

    private static boolean hasDevice(Path dir) {
        if (!Files.isDirectory(dir)) {
            return false;
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isPresent();
        } catch (java.io.IOException e) {
            return false; // unreadable counts as absent; the message names the directory
        }
    }
}
