package io.pagewire.perf.e2e;

import io.pagewire.transport.spi.TransportUri;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Locale;

/**
 * The reference figure of a two-host benchmark for transports other than TCP (TCP's is iperf3,
 * measured by {@link TransportBench} itself): for {@code rdma://}, perftest's {@code ib_write_bw}
 * (one-sided RDMA WRITE, as pagewire's data path) when it is installed on both hosts; for
 * {@code aeron:}, how to run Aeron's own two-host samples.
 */
final class Reference {
    private Reference() {
    }

    /** @return a sentence with the reference measured (or why there is none), or null for tcp (iperf3 covers it) */
    static String forRemote(String to, boolean wanted) throws InterruptedException {
        TransportUri u = TransportUri.parse(to);
        return switch (u.scheme()) {
            case "tcp" -> null;
            case "rdma" -> wanted ? ibWriteBw(u.host()) : "reference not measured (--iperf false)";
            case "aeron" -> "no automatic two-host reference for aeron: run Aeron's samples between the hosts"
                    + " (io.aeron.samples.StreamingPublisher here, RateSubscriber there; docs/aeron.md)";
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
}
