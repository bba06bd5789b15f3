package io.pagewire.transport.rdma.disni;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The probe reports exactly what is missing, given its inputs. */
class DisniProbeTest {
    @Test
    void eachMissingPieceIsNamedAndPresentOnesAreNot(@TempDir Path dir) throws Exception {
        Path libs = Files.createDirectory(dir.resolve("lib"));
        Path devices = Files.createDirectory(dir.resolve("infiniband"));
        String none = DisniProbe.probe(libs.toString(), devices);
        assertTrue(none.contains("libdisni") && none.contains("no RDMA device: " + devices + " is empty"), none);
        Files.createFile(libs.resolve(System.mapLibraryName("disni")));
        Files.createDirectory(devices.resolve("rxe0"));
        String some = DisniProbe.probe(libs.toString(), devices);
        assertFalse(some != null && some.contains("libdisni (DiSNi's native library"), "libdisni was found: " + some);
        assertFalse(some != null && some.contains("no RDMA device"), "a device is listed: " + some);
    }

    @Test
    void theJarIsFoundOnTheTestClassPath() {
        assertTrue(DisniProbe.isDisniJarPresent());
    }
}
