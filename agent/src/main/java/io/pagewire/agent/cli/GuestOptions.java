package io.pagewire.agent.cli;

import io.pagewire.agent.guest.SyntheticGuest;
import picocli.CommandLine.Option;

/** Options of the synthetic guest (demo and send). */
final class GuestOptions {
    @Option(names = "--ram", defaultValue = "1G", paramLabel = "SIZE", description = "guest RAM size (default ${DEFAULT-VALUE})")
    long ram;

    @Option(names = "--vcpus", defaultValue = "1", paramLabel = "N", description = "vCPU threads writing guest RAM (default ${DEFAULT-VALUE})")
    int vcpus;

    @Option(names = "--dirty-rate", defaultValue = "64M", paramLabel = "BYTES_PER_SEC",
            description = "bytes of pages dirtied per second by all vCPUs together, 0 = as fast as they can (default ${DEFAULT-VALUE})")
    long dirtyRate;

    @Option(names = "--pattern", defaultValue = "random", paramLabel = "P",
            description = "where the vCPUs write: idle, sequential, random, hotset (default ${DEFAULT-VALUE})")
    String pattern;

    @Option(names = "--working-set", defaultValue = "256M", paramLabel = "SIZE",
            description = "the part of RAM the vCPUs write, from the start (default ${DEFAULT-VALUE})")
    long workingSet;

    @Option(names = "--zero-fraction", defaultValue = "0.25", paramLabel = "F",
            description = "share of pages never written, 0..1 (default ${DEFAULT-VALUE})")
    double zeroFraction;

    @Option(names = "--balloon-fraction", defaultValue = "0", paramLabel = "F",
            description = "share of pages given back through the balloon, 0..1 (default ${DEFAULT-VALUE})")
    double balloonFraction;

    @Option(names = "--backing", defaultValue = "memfd", paramLabel = "B",
            description = "guest RAM: memfd or anonymous (default ${DEFAULT-VALUE})")
    String backing;

    @Option(names = "--huge-pages", description = {"anonymous guest RAM: ask for transparent huge pages (MADV_HUGEPAGE), as QEMU",
            "does for its RAM; dirty tracking stays at 4 KiB (a write splits the huge page)"})
    boolean hugePages;

    /** @return the guest RAM's region as {@code --ram}, {@code --backing} and {@code --huge-pages} ask */
    io.pagewire.ramtracker.RegionSpec regionSpec() {
        return switch (backing) {
            case "memfd" -> {
                if (hugePages) {
                    throw new IllegalArgumentException("--huge-pages asks for transparent huge pages, which only anonymous RAM has here: "
                            + "add --backing anonymous");
                }
                yield io.pagewire.ramtracker.RegionSpec.memfd("pc.ram", ram);
            }
            case "anonymous" -> io.pagewire.ramtracker.RegionSpec.anonymous("pc.ram", ram).hugePages(hugePages);
            default -> throw new IllegalArgumentException("--backing " + backing + " is not one of memfd, anonymous");
        };
    }

    SyntheticGuest.Pattern pattern() {
        try {
            return SyntheticGuest.Pattern.valueOf(pattern.toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--pattern " + pattern + " is not one of idle, sequential, random, hotset");
        }
    }
}
