package io.pagewire.perf.e2e;

import io.pagewire.transport.spi.TransportUri;

import io.pagewire.perf.aeron.AeronBench;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

/**
 * The reference figure of a two-host benchmark for transports other than TCP (TCP's is iperf3,
 * measured by {@link TransportBench} itself): for {@code rdma://}, perftest's {@code ib_write_bw}
 * (one-sided RDMA WRITE, as pagewire's data path) when it is installed on both hosts; for
 * {@code aeron:}, Aeron's own {@code StreamingPublisher} here to its {@code RateSubscriber} that {@code bench --serve}
 * keeps running there, both unmodified from the {@code aeron-all} jar of the same Aeron release, each with an embedded
 * driver and pagewire's Aeron settings, with messages the size of pagewire's frames.
 */
final class Reference {
    private Reference() {
    }

    /** @return a sentence with the reference measured (or why there is none), or null for tcp (iperf3 covers it) */
    static String forRemote(String to, boolean wanted, int aeronPort, long aeronMessages) throws InterruptedException {
        TransportUri u = TransportUri.parse(to);
        return switch (u.scheme()) {
            case "tcp" -> null;
            case "rdma" -> wanted ? ibWriteBw(u.host()) : "reference not measured (--iperf false)";
            case "aeron" -> wanted ? aeronStreaming(aeronHost(u), aeronPort, aeronMessages) : "reference not measured (--iperf false)";
            default -> "no reference figure for " + u.scheme() + ": URIs";
        };
    }

    /** Runs {@code ib_write_bw} against the server {@code bench --serve} started; the average bandwidth, in words. */
    private static String ibWriteBw(String host) throws InterruptedException {
        List<String> cmd = List.of("ib_write_bw", "--report_gbits", "-F", "-D", "5", host);
        String text;
        int rc;
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            rc = p.waitFor();
        } catch (IOException e) {
            return "no reference: perftest's ib_write_bw is not installed here (apt-get install perftest, on both hosts): " + e.getMessage();
        }
        if (rc != 0) {
            return "no reference: ib_write_bw to " + host + " failed (exit " + rc + "; is 'bench --serve' running there with perftest installed?): "
                    + text.lines().reduce((a, b) -> b).orElse("");
        }
        // The result line: #bytes #iterations BW-peak[Gb/sec] BW-average[Gb/sec] MsgRate[Mpps]
        for (String line : text.lines().toList().reversed()) {
            String[] f = line.strip().split("\\s+");
            if (f.length >= 4 && f[0].chars().allMatch(Character::isDigit) && f[3].matches("[0-9.]+")) {
                return String.format(Locale.ROOT, "ib_write_bw to %s (%s-byte RDMA WRITEs): %s Gbit/s average = %.2f GB/s", host, f[0], f[3],
                        Double.parseDouble(f[3]) / 8);
            }
        }
        return "no reference: ib_write_bw printed no result line: " + text.strip();
    }

    /** {@code bench --serve} on rdma://: keeps an ib_write_bw server running for the sources' references, when perftest is installed. */
    static Thread ibWriteBwServer() {
        return Thread.ofPlatform().daemon().name("ib_write_bw-server").start(() -> {
            try {
                while (!Thread.currentThread().isInterrupted()) {
                    Process p = new ProcessBuilder("ib_write_bw", "--report_gbits", "-F", "-D", "5").redirectErrorStream(true)
                            .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
                    if (p.waitFor() != 0) {
                        System.err.println("ib_write_bw server exited " + p.exitValue() + "; restarting in 1 s");
                        Thread.sleep(1000);
                    }
                }
            } catch (IOException e) {
                System.err.println("no ib_write_bw here (" + e.getMessage() + "): sources get no RDMA reference; apt-get install perftest");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
    }

    /** Aeron's samples' stream id (theirs: {@code aeron.sample.streamId}). */
    private static final int AERON_SAMPLE_STREAM = 1001;

    /** @return the host of an {@code aeron:udp?endpoint=host:port} URI */
    static String aeronHost(TransportUri u) {
        String endpoint = u.options().get("endpoint");
        if (endpoint == null || endpoint.lastIndexOf(':') <= 0) {
            throw new IllegalArgumentException("the two-host Aeron reference needs an aeron:udp?endpoint=HOST:PORT URI, not " + u.text());
        }
        return endpoint.substring(0, endpoint.lastIndexOf(':'));
    }

    private static List<String> aeronSampleProperties(String channel, String what) {
        List<String> props = new ArrayList<>(AeronBench.PAGEWIRE_SETTINGS);
        props.add("-Daeron.sample.embeddedMediaDriver=true");
        props.add("-Daeron.dir=" + Path.of(System.getProperty("java.io.tmpdir"), "pagewire-aeron-ref-" + what + "-" + ProcessHandle.current().pid()));
        props.add("-Daeron.dir.delete.on.start=true");
        props.add("-Daeron.dir.delete.on.shutdown=true");
        props.add("-Daeron.sample.channel=" + channel);
        props.add("-Daeron.sample.streamId=" + AERON_SAMPLE_STREAM);
        return props;
    }

    /**
     * {@code bench --serve} on {@code aeron:}: Aeron's {@code RateSubscriber} on {@code host:port} for the sources'
     * references, for as long as this JVM runs; its own output is dropped (the source reports the rate).
     *
     * @return the subscriber, or null (with the reason on stderr) when the reference jar is missing
     */
    static Process aeronSubscriber(String host, int port) {
        try {
            List<String> props = aeronSampleProperties("aeron:udp?endpoint=" + host + ":" + port, "sub");
            // The sample's default busy-spins a core for as long as it runs: back off while no reference streams, so
            // pagewire's own runs on this host do not compete with an idle subscriber.
            props.add("-Daeron.sample.idleStrategy=org.agrona.concurrent.BackoffIdleStrategy");
            Process p = AeronBench.startSample("io.aeron.samples.RateSubscriber", props);
            Thread.ofPlatform().daemon().name("aeron-reference-subscriber-output").start(() -> {
                try (var in = p.getInputStream()) {
                    in.transferTo(OutputStream.nullOutputStream());
                } catch (IOException e) {
                    System.err.println("Aeron's RateSubscriber: its output broke off: " + e.getMessage());
                }
            });
            System.err.println("Aeron's RateSubscriber on " + host + ":" + port + " (the source's reference); --iperf false to do without");
            return p;
        } catch (IOException | IllegalStateException e) {
            System.err.println("no Aeron reference here (" + e.getMessage() + "): sources get no aeron: reference figure");
            return null;
        }
    }

    /**
     * Streams {@code messages} pagewire-frame-sized messages with Aeron's {@code StreamingPublisher} to {@code host:port}.
     * The sample reports once a second: a run that ends within its first second (a fast link, few messages) reports
     * nothing, so it is run once more with ten times the messages.
     */
    static String aeronStreaming(String host, int port, long messages) throws InterruptedException {
        String channel = "aeron:udp?endpoint=" + host + ":" + port;
        System.out.println("== Aeron StreamingPublisher to " + channel + " (reference)");
        try {
            Process p = null;
            List<Double> rates = List.of();
            for (long n = messages; rates.isEmpty() && n <= 10 * messages; n *= 10) {
                List<String> props = aeronSampleProperties(channel, "pub");
                props.add("-Daeron.sample.messages=" + n);
                props.add("-Daeron.sample.messageLength=" + AeronBench.PAGEWIRE_FRAME_BYTES);
                p = AeronBench.startSample("io.aeron.samples.StreamingPublisher", props);
                rates = AeronBench.readRates(p, "  ");
                if (!p.waitFor(1, TimeUnit.MINUTES)) {
                    p.destroyForcibly();
                    return "no reference: Aeron's StreamingPublisher to " + channel + " did not finish within a minute";
                }
                if (rates.isEmpty() && p.exitValue() == 0 && n == messages) {
                    System.out.println("  " + n + " messages took less than a second (no rate report): again with " + 10 * n);
                }
                if (p.exitValue() != 0) {
                    break;
                }
            }
            double median = AeronBench.steadyMedian(rates, "Aeron's StreamingPublisher (exit " + p.exitValue()
                    + "; is 'bench --serve' running there, on --aeron-reference-port " + port + "?)");
            return String.format(Locale.ROOT, "Aeron's StreamingPublisher to RateSubscriber at %s (%d-byte messages, pagewire's Aeron"
                    + " settings, embedded drivers): %.2f GB/s median of its per-second reports", channel, AeronBench.PAGEWIRE_FRAME_BYTES,
                    median / 1e9);
        } catch (IOException | IllegalStateException e) {
            return "no reference: Aeron's StreamingPublisher to " + channel + ": " + e.getMessage();
        }
    }
}
