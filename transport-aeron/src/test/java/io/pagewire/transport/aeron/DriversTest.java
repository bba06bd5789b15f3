package io.pagewire.transport.aeron;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Embedded drivers: shared and counted, unique directories, removed with their last user; dead processes' swept. */
class DriversTest {

    @Test
    void driversAreSharedCountedAndLeaveNoFiles() {
        String dir;
        try (Drivers.Lease a = Drivers.embedded(Drivers.Role.URGENT); Drivers.Lease b = Drivers.embedded(Drivers.Role.URGENT);
             Drivers.Lease bulk = Drivers.embedded(Drivers.Role.BULK)) {
            assertSame(a.aeron(), b.aeron(), "one urgent driver per process");
            assertNotSame(a.aeron(), bulk.aeron(), "the bulk stream has a driver of its own");
            assertTrue(a.embedded());
            dir = a.directory();
            assertTrue(Files.isDirectory(Path.of(dir)));
            assertTrue(Path.of(dir).getFileName().toString().startsWith(ProcessHandle.current().pid() + "-urgent-"), dir);
            try (Drivers.Lease byDir = Drivers.directory(dir, "test")) {
                assertSame(a.aeron(), byDir.aeron(), "aeron.dir naming our own embedded driver shares its client");
            }
            a.close();
            a.close(); // idempotent: does not release b's reference
            assertTrue(Files.isDirectory(Path.of(dir)), "still used by b");
        }
        assertFalse(Files.exists(Path.of(dir)), "the directory goes with the driver");
        assertEquals(List.of(), Drivers.runningEmbedded());
    }

    @Test
    void randomStreamIdsArePositiveSoReportedUrisParse() {
        for (int i = 0; i < 10_000; i++) {
            int id = AeronTransportProvider.randomStreamId();
            assertTrue(id > 0 && id != AeronOptions.DEFAULT_STREAM_ID, "stream id " + id);
        }
    }

    @Test
    void directoriesOfDeadProcessesAreSwept() throws Exception {
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        long deadPid = p.pid();
        Path stale = Drivers.root().resolve(deadPid + "-bulk-1");
        Files.createDirectories(stale.resolve("publications"));
        Files.writeString(stale.resolve("cnc.dat"), "left by a SIGKILLed migration");
        Path foreign = Drivers.root().resolve("not-ours");
        Files.createDirectories(foreign);
        try (Drivers.Lease ignored = Drivers.embedded(Drivers.Role.URGENT)) {
            assertFalse(Files.exists(stale), "swept when a driver starts");
        } finally {
            assertTrue(Files.exists(foreign), "names that are not <pid>-... are left alone");
            Drivers.deleteTree(foreign);
        }
    }
}
