package io.pagewire.perf.rdma;

import io.pagewire.transport.rdma.RdmaTransportProvider;
import io.pagewire.transport.rdma.RdmaWork;
import io.pagewire.transport.rdma.sim.SimFabric;
import io.pagewire.transport.rdma.sim.SimStats;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.RamRegion;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.Transports;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The work the RDMA transport does per page, over the simulated fabric: what the transport
 * itself allocates and copies, and the verbs it asks of the NIC per page and per batch. The
 * target: no copy and no allocation per page in steady state, one notification (SEND) per batch.
 *
 * <p>Two ways to run it (after {@code ./mvnw -B -q install -DskipTests}, or {@code package} of perf):
 * <pre>
 * # counters per page and per batch for each scenario (a table on stdout and in perf/target/reports/)
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" \
 *     io.pagewire.perf.rdma.RdmaWorkPerPage
 * # time and allocation per page with JMH (allocation over all threads: -prof gc, gc.alloc.rate.norm is per page)
 * java -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" org.openjdk.jmh.Main RdmaWorkPerPage -prof gc
 * </pre>
 * Times over the simulated fabric measure this JVM's memcpy and thread hand-offs, not a NIC;
 * the counts are what carries over to hardware.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Dpagewire.rdma.fabric=simulated", "-Xmx1g"})
public class RdmaWorkPerPage {
    static final long RAM = 64L << 20;
    static final int PAGE = 4096;
    static final int PAGES_PER_OP = 4096;

    /** Scenarios: name, URI options, page pattern. */
    enum Scenario {
        CONTIGUOUS_PIN_ALL("pin-all=true", false),
        CONTIGUOUS_ON_DEMAND("reg-cache-chunks=256", false),
        SCATTERED_PIN_ALL("pin-all=true", true),
        SCATTERED_ON_DEMAND("reg-cache-chunks=256", true),
        CONTIGUOUS_DATA_DIGEST("pin-all=true&data-digest=true", false);

        final String options;
        final boolean scattered;

        Scenario(String options, boolean scattered) {
            this.options = options;
            this.scattered = scattered;
        }
    }

    @Param({"CONTIGUOUS_PIN_ALL", "CONTIGUOUS_ON_DEMAND", "SCATTERED_PIN_ALL", "SCATTERED_ON_DEMAND", "CONTIGUOUS_DATA_DIGEST"})
    public String scenario;

    private Arena arena;
    private Listener listener;
    private Connection source;
    private Connection destination;
    private long pages;
    private long cursor;
    private boolean scattered;

    @Setup(Level.Trial)
    public void open() throws Exception {
        open(Scenario.valueOf(scenario));
    }

    void open(Scenario s) throws Exception {
        System.setProperty(RdmaTransportProvider.FABRIC_PROPERTY, "simulated");
        scattered = s.scattered;
        arena = Arena.ofShared();
        MemorySegment srcMem = arena.allocate(RAM, 4096);
        MemorySegment dstMem = arena.allocate(RAM, 4096);
        for (long off = 0; off < RAM; off += 8) {
            srcMem.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, off, off * 0x9E3779B97F4A7C15L);
        }
        dstMem.fill((byte) 1); // touch it: first touch is not the transport's work
        pages = RAM / PAGE;
        RamLayout src = RamLayout.of(RamRegion.of("pc.ram", srcMem, PAGE));
        RamLayout dst = RamLayout.of(RamRegion.of("pc.ram", dstMem, PAGE));
        listener = Transports.listen("rdma://127.0.0.1:0?" + s.options, new TransportContext().layout(dst));
        CompletableFuture<Connection> c = CompletableFuture.supplyAsync(() -> Transports.connect(listener.uri(),
                new TransportContext().layout(src)));
        destination = listener.accept(null, Duration.ofSeconds(30));
        source = c.get(30, TimeUnit.SECONDS);
    }

    /** Sends {@link #PAGES_PER_OP} pages (contiguous, or every other page one at a time) and waits until the NIC has read them. */
    @Benchmark
    @OperationsPerInvocation(PAGES_PER_OP)
    public void sendPages() {
        if (scattered) {
            long base = cursor;
            for (int i = 0; i < PAGES_PER_OP; i++) {
                source.background().sendPages(0, (base + 2L * i) % pages, 1);
            }
            cursor = (base + 2L * PAGES_PER_OP + 1) % pages;
        } else {
            source.background().sendPages(0, cursor, PAGES_PER_OP);
            cursor = (cursor + PAGES_PER_OP) % pages;
        }
        source.background().flush();
    }

    @TearDown(Level.Trial)
    public void close() {
        source.close();
        destination.close();
        listener.close();
        arena.close();
    }

    // ================================================================== the counter report

    private record Row(Scenario scenario, long pages, double nsPerPage, double allocPerPage, double copiedPerPage, double writesPerPage,
                       double postSendPerPage, double sendsPerPage, double sendBytesPerPage, double pagesPerNotification, double postRecvPerPage,
                       double pollsPerPage, double completionsPerPage, double registrationsPerPage) {
    }

    private static long allocatedByAllThreads() {
        com.sun.management.ThreadMXBean t = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long sum = 0;
        for (long a : t.getThreadAllocatedBytes(t.getAllThreadIds())) {
            sum += Math.max(0, a);
        }
        return sum;
    }

    private static Row measure(Scenario s, int warmupOps, int ops) throws Exception {
        RdmaWorkPerPage b = new RdmaWorkPerPage();
        b.open(s);
        try {
            for (int i = 0; i < warmupOps; i++) {
                b.sendPages();
            }
            SimStats f = SimFabric.instance().stats();
            long postSend = f.postSendCalls();
            long writes = f.writeRequests();
            long sends = f.sendRequests();
            long sendBytes = f.sendBytes();
            long postRecv = f.postRecvCalls();
            long polls = f.pollCalls();
            long completions = f.completions();
            long regs = f.registrations();
            RdmaWork w0 = RdmaWork.of(b.source);
            long alloc = allocatedByAllThreads();
            long t0 = System.nanoTime();
            for (int i = 0; i < ops; i++) {
                b.sendPages();
            }
            long ns = System.nanoTime() - t0;
            long allocated = allocatedByAllThreads() - alloc;
            RdmaWork w = RdmaWork.of(b.source).minus(w0);
            double n = (double) ops * PAGES_PER_OP;
            return new Row(s, (long) n, ns / n, allocated / n, w.copiedPageBytes() / (n * PAGE), (f.writeRequests() - writes) / n,
                    (f.postSendCalls() - postSend) / n, (f.sendRequests() - sends) / n, (f.sendBytes() - sendBytes) / n,
                    n / Math.max(1, w.pageMessages()), (f.postRecvCalls() - postRecv) / n, (f.pollCalls() - polls) / n,
                    (f.completions() - completions) / n, (f.registrations() - regs) / n);
        } finally {
            b.close();
        }
    }

    /** Runs every scenario and prints the work per page; writes the table to {@code perf/target/reports/}. */
    public static void main(String[] args) throws Exception {
        int warmup = args.length > 0 ? Integer.parseInt(args[0]) : 200;
        int ops = args.length > 1 ? Integer.parseInt(args[1]) : 400;
        StringBuilder md = new StringBuilder();
        md.append("# RDMA transport: work per page over the simulated fabric\n\n");
        md.append(String.format(Locale.ROOT, "%d pages per operation, %d warm-up and %d measured operations per scenario, 4 KiB pages, 64 MiB RAM,"
                + " batch-bytes 256k (64 pages). Allocation is summed over all threads of the JVM (transport threads and the simulated NIC's).%n%n",
                PAGES_PER_OP, warmup, ops));
        md.append("| scenario | ns/page (sim) | bytes allocated/page | page bytes copied/page | RDMA WRITEs/page | ibv_post_send/page "
                + "| SENDs/page | SEND bytes/page | pages/notification | ibv_post_recv/page | ibv_poll_cq/page | completions/page | registrations/page |\n");
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Scenario s : Scenario.values()) {
            Row r = measure(s, warmup, ops);
            md.append(String.format(Locale.ROOT, "| %s | %.0f | %.3f | %.2f | %.3f | %.4f | %.4f | %.2f | %.1f | %.4f | %.4f | %.4f | %.5f |%n",
                    s, r.nsPerPage(), r.allocPerPage(), r.copiedPerPage(), r.writesPerPage(), r.postSendPerPage(), r.sendsPerPage(),
                    r.sendBytesPerPage(), r.pagesPerNotification(), r.postRecvPerPage(), r.pollsPerPage(), r.completionsPerPage(),
                    r.registrationsPerPage()));
        }
        System.out.print(md);
        Path dir = Path.of("perf", "target", "reports");
        Files.createDirectories(dir);
        Path out = dir.resolve("rdma-work-per-page-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + ".md");
        Files.writeString(out, md, StandardCharsets.UTF_8);
        System.out.println("\nwritten to " + out);
    }
}
