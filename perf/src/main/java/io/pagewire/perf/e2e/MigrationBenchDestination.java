package io.pagewire.perf.e2e;

import io.pagewire.agent.DestinationMigration;
import io.pagewire.agent.MigrationStats;
import io.pagewire.agent.guest.SyntheticGuest;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.PeerText;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Locale;

/**
 * The destination JVM of {@link MigrationBench}: receives one migration per command on stdin,
 * like a long-running QEMU destination process.
 * <pre>
 *   stdin:  receive URI RAM_BYTES POPULATE [postcopy VCPUS PATTERN SET RATE]
 *                                              -> stdout: LISTENING uri ... RESULT status verification (or ERROR why)
 *   stdin:  exit
 * </pre>
 * The same commands come over a TCP control connection from another host with {@code MigrationBench --serve}.
 * RAM is anonymous memory (transparent huge pages except for postcopy, which then uses MISSING
 * faults), or a memfd with {@code -Dpagewire.bench.backing=memfd} (postcopy in MINOR mode), freed
 * after each migration.
 */
public final class MigrationBenchDestination {
    private MigrationBenchDestination() {
    }

    public static void main(String[] args) throws Exception {
        serve(new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)), System.out, Long.MAX_VALUE,
                System.getProperty("pagewire.bench.backing", "anonymous"));
    }

    /**
     * Serves commands until {@code exit} or the end of {@code in}: the local child JVM's stdin/stdout, or a
     * {@code MigrationBench --serve} control connection from another host. A malformed command, or one asking
     * for more than {@code maxRam}, is answered {@code ERROR why} and the next command is read.
     *
     * @param backing the destination RAM: anonymous or memfd
     */
    static void serve(BufferedReader in, PrintStream out, long maxRam, String backing) throws Exception {
        String line;
        while ((line = in.readLine()) != null && !line.equals("exit")) {
            String[] a = line.split(" ");
            long ram;
            DestinationMigration.Populate populate;
            SyntheticGuest.Config postcopyGuest = null;
            try {
                if ((a.length != 4 && a.length != 9) || !a[0].equals("receive")) {
                    throw new IllegalArgumentException("unknown command (expected: receive URI RAM_BYTES POPULATE [postcopy VCPUS PATTERN SET RATE])");
                }
                ram = Long.parseLong(a[2]);
                if (ram <= 0 || ram > maxRam) {
                    throw new IllegalArgumentException("RAM " + ram + " is outside 1.." + maxRam + " (--max-ram of the server)");
                }
                populate = DestinationMigration.Populate.valueOf(a[3].toUpperCase(Locale.ROOT));
                if (a.length == 9) {
                    postcopyGuest = new SyntheticGuest.Config(Integer.parseInt(a[5]), Long.parseLong(a[8]), SyntheticGuest.Pattern.valueOf(a[6]),
                            Long.parseLong(a[7]), 7, SyntheticGuest.Access.READ);
                }
            } catch (IllegalArgumentException e) { // NumberFormatException too
                out.println("ERROR " + PeerText.escape(e.getMessage()) + ": " + PeerText.escape(line));
                out.flush();
                continue;
            }
            receive(a[1], ram, populate, postcopyGuest, backing, out);
        }
    }

    private static void receive(String uri, long ram, DestinationMigration.Populate populate, SyntheticGuest.Config postcopyGuest, String backing,
                                PrintStream out) throws Exception {
        boolean postcopy = postcopyGuest != null;
        try (GuestRam guestRam = GuestRam.create()) {
            var region = guestRam.open(backing.equals("memfd") ? RegionSpec.memfd("pc.ram", ram) : RegionSpec.anonymous("pc.ram", ram).hugePages(!postcopy));
            java.util.concurrent.atomic.AtomicReference<SyntheticGuest> guest = new java.util.concurrent.atomic.AtomicReference<>();
            try (DestinationMigration dst = new DestinationMigration(guestRam, postcopy); Listener l = dst.listen(guestRam, uri)) {
                if (postcopy) {
                    dst.onPostcopyStart(() -> {
                        SyntheticGuest g = new SyntheticGuest(region.memory().asSlice(0, ram), region.pageSize(), postcopyGuest, p -> true).start();
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
                out.println("LISTENING " + l.uri());
                out.flush();
                MigrationStats s;
                try {
                    s = dst.receive(l, Duration.ofMinutes(10));
                } finally {
                    if (guest.get() != null) {
                        dst.releaseGuestMemory(); // a vCPU blocked on a page that never came must be let go first
                        guest.get().close();
                    }
                }
                out.println("RESULT " + s.status().qemuName() + " " + dst.verification());
                out.flush();
            }
        }
    }
}
