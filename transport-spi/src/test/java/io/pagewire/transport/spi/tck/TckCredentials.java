package io.pagewire.transport.spi.tck;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Credentials for the authentication cases, made once per JVM in a temporary directory: two
 * pre-shared key files, and two test CAs made by {@code scripts/make-test-ca.sh} (openssl), each
 * in QEMU's tls-creds layout, so {@code tls-creds=DIR} works on both sides of one URI.
 */
public final class TckCredentials {
    private static TckCredentials instance;

    /** The first pre-shared key. */
    public final Path psk;
    /** Another pre-shared key (the wrong one). */
    public final Path otherPsk;
    /** A CA with a destination (CN pagewire-destination) and a source (CN pagewire-source). */
    public final Path certs;
    /** Another CA, same names: its certificates are strangers to {@link #certs}. */
    public final Path otherCa;

    private TckCredentials(Path dir) throws IOException, InterruptedException {
        psk = key(dir.resolve("psk"));
        otherPsk = key(dir.resolve("other-psk"));
        certs = ca(dir.resolve("ca"));
        otherCa = ca(dir.resolve("other-ca"));
    }

    /** @return the credentials (skips the test when openssl is missing) */
    public static synchronized TckCredentials get() throws IOException, InterruptedException {
        if (instance == null) {
            Path dir = Files.createTempDirectory("pagewire-tck-creds");
            dir.toFile().deleteOnExit();
            instance = new TckCredentials(dir);
        }
        return instance;
    }

    private static Path key(Path p) throws IOException {
        byte[] k = new byte[32];
        new SecureRandom().nextBytes(k);
        Files.write(p, k);
        return p;
    }

    private static Path ca(Path dir) throws IOException, InterruptedException {
        Path script = script();
        assumeTrue(script != null, "scripts/make-test-ca.sh not found above " + Path.of("").toAbsolutePath());
        Process p;
        try {
            p = new ProcessBuilder("sh", script.toString(), dir.toString()).redirectErrorStream(true).start();
        } catch (IOException e) {
            assumeTrue(false, "cannot run sh for make-test-ca.sh: " + e.getMessage());
            throw e;
        }
        String out = new String(p.getInputStream().readAllBytes());
        assumeTrue(p.waitFor(60, TimeUnit.SECONDS), "make-test-ca.sh did not finish within 60 s");
        assumeTrue(p.exitValue() != 2, "openssl is not installed (make-test-ca.sh): " + out);
        if (p.exitValue() != 0) {
            throw new IOException("make-test-ca.sh " + dir + " failed with exit " + p.exitValue() + ": " + out);
        }
        return dir;
    }

    private static Path script() {
        for (Path d = Path.of("").toAbsolutePath(); d != null; d = d.getParent()) {
            Path s = d.resolve("scripts/make-test-ca.sh");
            if (Files.isRegularFile(s)) {
                return s;
            }
        }
        return null;
    }
}
