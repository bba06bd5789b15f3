package io.pagewire.perf.e2e;

import io.pagewire.agent.DestinationMigration;
import io.pagewire.agent.MigrationStats;
import io.pagewire.agent.guest.SyntheticGuest;
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
 * RAM is anonymous memory (transparent huge pages except for postcopy, which then uses MISSING
 * faults), or a memfd with {@code -Dpagewire.bench.backing=memfd} (postcopy in MINOR mode), freed
 * after each migration.
 */
public final class MigrationBenchDestination {
    private MigrationBenchDestination() {
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null && !line.equals("exit")) {
            String[] a = line.split(" ");
            if ((a.length != 4 && a.length != 9) || !a[0].equals("receive")) {
                throw new IllegalArgumentException("unknown command: " + line);
            }
            long ram = Long.parseLong(a[2]);
            DestinationMigration.Populate populate = DestinationMigration.Populate.valueOf(a[3].toUpperCase(Locale.ROOT));
            boolean postcopy = a.length == 9;
            try (GuestRam guestRam = GuestRam.create()) {
                var region = guestRam.open(System.getProperty("pagewire.bench.backing", "anonymous").equals("memfd")
                        ? RegionSpec.memfd("pc.ram", ram) : RegionSpec.anonymous("pc.ram", ram).hugePages(!postcopy));
                java.util.concurrent.atomic.AtomicReference<SyntheticGuest> guest = new java.util.concurrent.atomic.AtomicReference<>();
                try (DestinationMigration dst = new DestinationMigration(guestRam, postcopy); Listener l = dst.listen(guestRam, a[1])) {
                    if (postcopy) {
                        SyntheticGuest.Config cfg = new SyntheticGuest.Config(Integer.parseInt(a[5]), Long.parseLong(a[8]),
                                SyntheticGuest.Pattern.valueOf(a[6]), Long.parseLong(a[7]), 7, SyntheticGuest.Access.READ);
                        dst.onPostcopyStart(() -> {
                            SyntheticGuest g = new SyntheticGuest(region.memory().asSlice(0, ram), region.pageSize(), cfg, p -> true).start();
                            guest.set(g);
                            try {
                                return g.vcpuThreadIds();
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                                return new int[0];
                            }
                        });
                    }
                    dst.startPopulating(populate);
                    System.out.println("LISTENING " + l.uri());
                    System.out.flush();
                    MigrationStats s;
                    try {
                        s = dst.receive(l, Duration.ofMinutes(10));
                    } finally {
                        if (guest.get() != null) {
                            dst.releaseGuestMemory(); // a vCPU blocked on a page that never came must be let go first
                            guest.get().close();
                        }
                    }
                    System.out.println("RESULT " + s.status().qemuName() + " " + dst.verification());
                    System.out.flush();
                }
            }
        }
    }
}
