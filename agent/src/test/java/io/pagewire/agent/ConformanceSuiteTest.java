package io.pagewire.agent;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

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

    @Test
    void theReceiverMeetsTheDocumentAsASecondImplementationSpeaksIt() throws Exception {
        assumeTrue(PythonScript.python3(), "python3 is not on the PATH: the conformance suite is a Python program");
        PythonScript.Result r = PythonScript.run("pagewire_conformance.py", List.of("--jobs", "2"), "conformance");
        assertEquals(0, r.exit(), "conformance failures:\n" + r.output());
        assertTrue(r.output().contains("PASSED:"), r.output());
    }
}
