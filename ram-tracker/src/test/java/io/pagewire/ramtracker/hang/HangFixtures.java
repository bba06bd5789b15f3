package io.pagewire.ramtracker.hang;

import io.pagewire.ramtracker.linux.Mappings;
import io.pagewire.ramtracker.linux.Userfaultfd;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Tests that hang on purpose, run only by {@link HangWatchdogTest} in a child JVM (the name does
 * not match surefire's patterns, and each test also needs a system property).
 */
class HangFixtures {
    /** The trap issue 11 found: a Java load from userfaultfd memory blocks while a safepoint is requested. */
    @Test
    @Timeout(5)
    void javaCodeFaultsOnRegisteredMemory() throws Exception {
        assumeTrue(Boolean.getBoolean("pagewire.fixture.safepoint"), "run by HangWatchdogTest only");
        Arena arena = Arena.ofShared();
        Userfaultfd uffd = Userfaultfd.open(0);
        MemorySegment m = Mappings.mapAnonymous(1 << 20, false, arena);
        uffd.register(m, Userfaultfd.MODE_MISSING);
        Thread vcpu = Thread.ofPlatform().name("faulting-vcpu").start(() -> {
            long sum = 0;
            for (int i = 0; i < 256; i++) {
                sum += m.get(ValueLayout.JAVA_LONG, i * 4096L); // the wrong way: Java code, registered memory
            }
            System.out.println(sum);
        });
        // No page is ever placed; ask for safepoints until the JVM stops.
        while (vcpu.isAlive()) {
            System.gc();
        }
    }

    /** A test that ignores JUnit's interrupt and never ends. */
    @Test
    @Timeout(1)
    void ignoresTheInterrupt() {
        assumeTrue(Boolean.getBoolean("pagewire.fixture.spin"), "run by HangWatchdogTest only");
        while (true) {
            Thread.onSpinWait();
        }
    }
}
