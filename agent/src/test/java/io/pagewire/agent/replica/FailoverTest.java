package io.pagewire.agent.replica;

import io.pagewire.agent.ChildJvm;
import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.dirty.UffdWriteTracker;
import io.pagewire.ramtracker.linux.Userfaultfd;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Failover with real processes: {@code pagewire receive --replica} (its own guest writing) and {@code pagewire replicate}
 * (checksums on) over TCP on loopback; the primary is killed with SIGKILL before, during or after a checkpoint, and the
 * secondary's guest RAM must then equal the primary's RAM at the last complete checkpoint, by CRC32C.
 */
class FailoverTest {
    private static final Pattern CHECKPOINT = Pattern.compile("CHECKPOINT (\\d+) pause-ms=\\S+ crc=([0-9a-f]+)");
    private static final Pattern FAILOVER = Pattern.compile("FAILOVER epoch=(\\d+) crc=([0-9a-f]+) .*");

    /** When the primary dies. */
    enum Kill {
        /** Between checkpoints, after background pages of the next one landed in the cache. */
        BEFORE_CHECKPOINT,
        /** Inside a checkpoint: its pages and round end sent, its marker not. */
        DURING_CHECKPOINT,
        /** Right after a checkpoint was acknowledged. */
        AFTER_CHECKPOINT,
        /**
         * Lazy apply: checkpoint 3 is complete and the secondary's guest runs while its pages are filled; the filler is
         * held part way ({@code --debug-hold-fill}), the guest faulting pages in meanwhile. The failover finishes the
         * fill: the guest RAM is checkpoint 3.
         */
        DURING_LAZY_FILL
    }

    private final List<Process> children = new ArrayList<>();

    @AfterEach
    void killChildren() throws InterruptedException {
        for (Process p : children) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @ParameterizedTest
    @EnumSource(Kill.class)
    void secondaryTakesOverAtTheLastCompleteCheckpoint(Kill kill) throws Exception {
        assumeTrue(UffdWriteTracker.isAvailable(Backing.MEMFD), "userfaultfd write-protect async mode with PAGEMAP_SCAN on memfd");
        assumeTrue(Userfaultfd.missingFeatures(io.pagewire.ramtracker.snapshot.WriteProtectedRam.REQUIRED_FEATURES
                | Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM) == null, "synchronous userfaultfd write-protect on shmem");
        List<String> secondaryArgs = new ArrayList<>(List.of("receive", "--replica", "--listen", "tcp://127.0.0.1:0", "--ram", "64M",
                "--vcpus", "1", "--pattern", "random", "--dirty-rate", "16M", "--working-set", "48M"));
        if (kill == Kill.DURING_LAZY_FILL) {
            assumeTrue(Userfaultfd.missingFeatures(io.pagewire.ramtracker.snapshot.WriteProtectedRam.REQUIRED_FEATURES
                    | io.pagewire.ramtracker.snapshot.WriteProtectedRam.FILL_FEATURES) == null, "userfaultfd MINOR and MISSING faults on shmem");
            secondaryArgs.addAll(List.of("--replica-apply", "lazy", "--debug-hold-fill", "3"));
        }
        Process secondary = start(secondaryArgs);
        BufferedReader sout = reader(secondary);
        String uri = awaitLine(sout, "LISTENING ", null).substring("LISTENING ".length());
        List<String> primaryArgs = new ArrayList<>(List.of("replicate", "--to", uri, "--ram", "64M", "--interval", "0", "--checksums", "--verbose",
                "--zero-fraction", "0.5", "--dirty-rate", "32M", "--working-set", "32M"));
        if (kill == Kill.DURING_CHECKPOINT) {
            primaryArgs.addAll(List.of("--debug-hold-checkpoint", "3"));
        }
        Process primary = start(primaryArgs);
        BufferedReader pout = reader(primary);
        OutputStream monitor = primary.getOutputStream();
        Map<Long, String> crcs = new HashMap<>();
        awaitLine(pout, "CHECKPOINT 1 ", crcs); // the first checkpoint ends the initial sync
        command(monitor, "checkpoint");
        awaitLine(pout, "CHECKPOINT 2 ", crcs);
        switch (kill) {
            case BEFORE_CHECKPOINT -> awaitLine(pout, "BACKGROUND ", crcs);
            case DURING_CHECKPOINT -> {
                command(monitor, "checkpoint");
                awaitLine(pout, "HOLD 3", crcs);
            }
            case AFTER_CHECKPOINT -> { }
            case DURING_LAZY_FILL -> {
                command(monitor, "checkpoint");
                awaitLine(pout, "CHECKPOINT 3 ", crcs);
                awaitLine(sout, "FILL-HOLD 3", null);
            }
        }
        primary.destroyForcibly(); // SIGKILL
        assertTrue(primary.waitFor(10, TimeUnit.SECONDS));
        Matcher m = FAILOVER.matcher(awaitLine(sout, "FAILOVER ", null));
        assertTrue(m.matches());
        long epoch = Long.parseLong(m.group(1));
        long expected = kill == Kill.DURING_LAZY_FILL ? 3 : 2;
        assertEquals(expected, epoch, "the last complete checkpoint");
        assertNotNull(crcs.get(expected));
        assertEquals(crcs.get(expected), m.group(2), "the secondary's RAM after failover equals the primary's at checkpoint " + expected);
        assertTrue(secondary.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, secondary.exitValue());
    }

    private Process start(List<String> args) throws IOException {
        Process p = new ProcessBuilder(ChildJvm.command(args)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        children.add(p);
        return p;
    }

    private static BufferedReader reader(Process p) {
        return new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    }

    private static void command(OutputStream monitor, String command) throws IOException {
        monitor.write((command + "\n").getBytes(StandardCharsets.UTF_8));
        monitor.flush();
    }

    /** Reads lines up to one starting with {@code prefix}, recording checkpoint checksums on the way. */
    private static String awaitLine(BufferedReader r, String prefix, Map<Long, String> crcs) throws IOException {
        String line;
        while ((line = r.readLine()) != null) {
            Matcher m = CHECKPOINT.matcher(line);
            if (crcs != null && m.matches()) {
                crcs.put(Long.parseLong(m.group(1)), m.group(2));
            }
            if (line.startsWith(prefix)) {
                return line;
            }
        }
        throw new AssertionError("child ended without printing " + prefix);
    }
}
