package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The hostile source ({@code conformance/hostile_source.py}, docs/testing.md "The hostile source"): mutated
 * valid migrations played at the real {@code pagewire receive} in child JVMs, which must refuse each one
 * that is not a valid migration with a clear error, never crash, hang or report success for it, and never
 * write a page no valid frame sent (its {@code --debug-ram-report} tells). A fixed seed and a bounded
 * number of cases here; {@code python3 conformance/hostile_source.py --cases 10000 --seed S -- ./pagewire
 * receive --ram 64M} runs it for longer.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class HostileSourceTest {
    /** Fixed: the same cases on every run (a failure names its case, replayable with --seed and --case). */
    private static final long SEED = 13;
    private static final int CASES = 100;

    @Test
    void mutatedMigrationsAreRefusedClearlyWithoutCrashHangOrStrayWrites() throws Exception {
        assumeTrue(PythonScript.python3(), "python3 is not on the PATH: the hostile source is a Python program");
        PythonScript.Result r = PythonScript.run("hostile_source.py", List.of("--cases", Integer.toString(CASES),
                "--seed", Long.toString(SEED), "--jobs", "2", "--max-seconds", "45"), "hostile");
        assertEquals(0, r.exit(), "the receiver failed an oracle:\n" + r.output());
        // The control run (the unmutated stream: RECEIVED verified, the RAM exactly as sent) and enough cases to matter.
        assertTrue(r.output().contains("control: RECEIVED verified"), r.output());
        assertTrue(r.output().matches("(?s).*PASSED: (\\d{2,}) of \\1 cases.*"), r.output());
    }
}
