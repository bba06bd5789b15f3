package io.pagewire.agent;

import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.TransportException;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The destination's side of verification (see {@link Protocol}): checksums its RAM with a
 * {@link RamChecksum}, chunks the final round does not write as soon as the source names them
 * (verify-final), the rest when the source begins (verify-begin); reports progress to the source
 * every {@link Protocol#VERIFY_PROGRESS_INTERVAL_NS}; compares with the source's checksums and
 * sends the verdict.
 *
 * <h2>Threading</h2>
 * The message methods are called on transport threads and never block: the urgent thread also
 * answers heartbeats, and a peer that hears nothing for its peer timeout drops the connection.
 * The checksum runs on its own pool; one coordinator thread ({@code pagewire-verify}) reports
 * progress, waits for the source's checksums and sends the verdict. The caller guarantees the
 * memory is readable from Java when it calls {@link #finalRound} or {@link #begin} (not
 * registered with userfaultfd).
 */
final class DestinationVerifier implements AutoCloseable {
    /** How long the destination waits for the source's checksums while the source shows no progress. */
    static final long SOURCE_STALL_NS = TimeUnit.SECONDS.toNanos(60);
    /** Threads that checksum once the migration completed. */
    private static final int THREADS = Math.min(4, Math.max(1, Runtime.getRuntime().availableProcessors()));

    private final List<GuestRegion> regions;
    private final MigrationStats stats;
    private final Runnable finished;
    private final CompletableFuture<String> expected = new CompletableFuture<>();
    private final ProgressDeadline source = new ProgressDeadline(SOURCE_STALL_NS, System.nanoTime());
    private RamChecksum checksum;  // guarded by this; created on first use
    private Thread coordinator;    // guarded by this
    private boolean closed;        // guarded by this
    private volatile String verdict;

    /**
     * @param regions the destination's regions, in wire order
     * @param stats where verify-time and verify-read go
     * @param finished called once the verdict was sent (or verification gave up)
     */
    DestinationVerifier(List<GuestRegion> regions, MigrationStats stats, Runnable finished) {
        this.regions = regions;
        this.stats = stats;
        this.finished = finished;
    }

    private synchronized RamChecksum checksum() {
        if (closed) {
            throw new IllegalStateException("verification message after the destination closed");
        }
        if (checksum == null) {
            // One thread while the final round still arrives (the migration's threads need the CPU more), all at begin().
            checksum = new RamChecksum(regions, 1, "pagewire-verify-");
        }
        return checksum;
    }

    /** verify-final (one message): starts the chunks of its range that the final round does not write. */
    void finalRound(Protocol.BitmapChunk written) {
        RamChecksum sum = checksum();
        long chunks = RamChecksum.chunks(regions.get(written.regionId()));
        for (long i = 0; i < written.words(); i++) {
            long word = written.word(i);
            for (int bit = 0; bit < 64; bit++) {
                long chunk = (written.firstWord() + i) * 64 + bit;
                if (chunk < chunks && (word & (1L << bit)) == 0) {
                    sum.submit(written.regionId(), chunk);
                }
            }
        }
    }

    /** verify-begin: the migration completed; checksums whatever is not started and starts the coordinator (once). */
    void begin(Connection c) {
        RamChecksum sum = checksum();
        synchronized (this) {
            if (coordinator != null) {
                return;
            }
            source.restart(System.nanoTime());
            long t0 = System.nanoTime();
            coordinator = Thread.ofPlatform().daemon().name("pagewire-verify").start(() -> coordinate(c, sum, t0));
        }
        sum.threads(THREADS);
        sum.submitAll();
    }

    /** verify-progress from the source (it is still checksumming): extends the wait for its checksums. */
    void sourceProgress(String args) {
        source.progress(Protocol.progressDone(args), System.nanoTime());
    }

    /** verify: the source's checksums (hex, one per region); begins if the source did not say so before. */
    void expected(String crcs, Connection c) {
        begin(c);
        expected.complete(crcs);
    }

    /** @return whether the coordinator runs or ran (the verdict is its business, not the receive loop's) */
    synchronized boolean active() {
        return coordinator != null;
    }

    /** @return whether any chunk was read or is being read */
    synchronized boolean startedReading() {
        return checksum != null && checksum.started();
    }

    /** The connection ended while verification ran: unless a verdict was reached, this is it. */
    synchronized void abandon(String why) {
        if (coordinator != null && verdict == null) {
            verdict = why;
        }
    }

    /** @return the verdict ("verified", "mismatch: ...", "unverified: ..."), null before any */
    String verdict() {
        return verdict;
    }

    private void coordinate(Connection c, RamChecksum sum, long t0) {
        String v;
        try {
            long[] actual = sum.await(Protocol.VERIFY_PROGRESS_INTERVAL_NS, done -> c.urgent().sendControl(Protocol.progress(done, sum.totalBytes())));
            String crcs = awaitSourceChecksums();
            v = crcs == null ? Protocol.UNVERIFIED + ": the source sent no checksums, and no progress for "
                    + TimeUnit.NANOSECONDS.toSeconds(source.stallNs()) + " s" : compare(crcs, actual);
        } catch (ExecutionException e) {
            v = Protocol.UNVERIFIED + ": the destination could not checksum its RAM: " + e.getCause();
        } catch (TransportException e) {
            v = Protocol.UNVERIFIED + ": the connection failed while the destination checksummed its RAM: " + e.getMessage();
        } catch (InterruptedException e) {
            // close() interrupts: the destination is going away, nothing is left to tell
            Thread.currentThread().interrupt();
            verdict = Protocol.UNVERIFIED + ": the destination closed while verifying";
            finished.run();
            return;
        }
        stats.verified(System.nanoTime() - t0, sum.readBytes());
        try {
            c.urgent().sendControl(MemorySegment.ofArray(v.getBytes(StandardCharsets.UTF_8)));
        } catch (TransportException e) {
            v = v + " (not delivered to the source: " + e.getMessage() + ")";
        }
        verdict = v;
        finished.run();
    }

    /** @return the source's checksums, or null when it showed no progress for {@link #SOURCE_STALL_NS} */
    private String awaitSourceChecksums() throws InterruptedException, ExecutionException {
        while (true) {
            long left = source.remainingNs(System.nanoTime());
            if (left <= 0) {
                return null;
            }
            try {
                return expected.get(left, TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                // the source may have shown progress meanwhile: the loop decides
            }
        }
    }

    private String compare(String crcs, long[] actual) {
        String[] expectedCrcs = crcs.isEmpty() ? new String[0] : crcs.split(" ");
        if (expectedCrcs.length != regions.size()) {
            return Protocol.MISMATCH + ": the source sent " + expectedCrcs.length + " checksums for " + regions.size() + " regions";
        }
        for (int i = 0; i < regions.size(); i++) {
            long e;
            try {
                e = Long.parseLong(expectedCrcs[i], 16);
            } catch (NumberFormatException x) {
                return Protocol.UNVERIFIED + ": the source's checksum for region '" + regions.get(i).name() + "' is not hex: '"
                        + Protocol.escape(expectedCrcs[i]) + "'";
            }
            if (e != actual[i]) {
                return Protocol.MISMATCH + ": region '" + regions.get(i).name() + "' has CRC32C " + Long.toHexString(actual[i]) + " here, "
                        + Long.toHexString(e) + " at the source";
            }
        }
        return Protocol.VERIFIED;
    }

    /** Stops checksumming and the coordinator; returns when no thread reads guest RAM any more. */
    @Override
    public void close() throws InterruptedException {
        RamChecksum sum;
        Thread t;
        synchronized (this) {
            closed = true;
            sum = checksum;
            t = coordinator;
        }
        if (sum != null) {
            sum.close();
        }
        if (t != null) {
            t.interrupt();
            t.join();
        }
    }
}
