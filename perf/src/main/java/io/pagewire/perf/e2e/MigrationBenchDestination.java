package io.pagewire.perf.e2e;

import io.pagewire.agent.DestinationMigration;
import io.pagewire.agent.MigrationStats;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Locale;

/**
 * The destination JVM of {@link MigrationBench}: receives one migration per command on stdin,
 * like a long-running QEMU destination process.
 * <pre>
 *   stdin:  receive URI RAM_BYTES POPULATE     -> stdout: LISTENING uri ... RESULT status verification
 *   stdin:  exit
 * </pre>
 * RAM is anonymous memory with transparent huge pages, freed after each migration.
 */
public final class MigrationBenchDestination {
    private MigrationBenchDestination() {
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null && !line.equals("exit")) {
            String[] a = line.split(" ");
            if (a.length != 4 || !a[0].equals("receive")) {
                throw new IllegalArgumentException("unknown command: " + line);
            }
            long ram = Long.parseLong(a[2]);
            DestinationMigration.Populate populate = DestinationMigration.Populate.valueOf(a[3].toUpperCase(Locale.ROOT));
            try (GuestRam guestRam = GuestRam.create()) {
                guestRam.open(RegionSpec.anonymous("pc.ram", ram).hugePages(true));
                try (DestinationMigration dst = new DestinationMigration(guestRam); Listener l = dst.listen(guestRam, a[1])) {
                    dst.startPopulating(populate);
                    System.out.println("LISTENING " + l.uri());
                    System.out.flush();
                    MigrationStats s = dst.receive(l, Duration.ofMinutes(10));
                    System.out.println("RESULT " + s.status().qemuName() + " " + dst.verification());
                    System.out.flush();
                }
            }
        }
    }
}
