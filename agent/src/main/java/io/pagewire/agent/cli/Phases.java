package io.pagewire.agent.cli;

import io.pagewire.agent.Json;
import io.pagewire.agent.MigrationStats;
import tools.jackson.databind.node.ObjectNode;

import java.lang.management.ManagementFactory;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.StringJoiner;

/**
 * Where the wall time of a command went, in the order it was spent: what the JVM did before the
 * command ran, starting the destination, the JIT warm-up, populating the guest, then the migration's own parts
 * (setup, rounds, downtime, verify, from {@link MigrationStats}). All in milliseconds since the
 * JVM started ({@code RuntimeMXBean.getUptime()}, which starts when the JVM is created: the
 * exec and the launcher before it are not in it).
 * <pre>
 *   jvm-start | destination-start | warm-up | populate | setup | rounds | downtime | verify | other
 *   '-------------------------------------- wall-time ----------------------------------------'
 * </pre>
 * Single-threaded: the command's thread records, then reports.
 */
final class Phases {
    private final Map<String, Long> ms = new LinkedHashMap<>();
    private long markMs;

    /** Starts at the command's entry: everything before is {@code jvm-start}. */
    Phases() {
        markMs = uptimeMs();
        ms.put("jvm-start", markMs);
    }

    private static long uptimeMs() {
        return ManagementFactory.getRuntimeMXBean().getUptime();
    }

    /** Ends phase {@code name} now: it lasted since the previous mark. */
    void mark(String name) {
        long now = uptimeMs();
        ms.merge(name, now - markMs, Long::sum);
        markMs = now;
    }

    /**
     * Ends the migration (called right after it returned): its time since the previous mark is
     * split into the statistics' setup, rounds, downtime and verify; what they do not cover is
     * {@code other}.
     */
    void migration(MigrationStats s) {
        long now = uptimeMs();
        long spent = now - markMs;
        long setup = Math.max(0, s.setupTimeMs());
        long downtime = Math.max(0, s.downtimeMs());
        long rounds = Math.max(0, s.totalTimeMs() - setup - downtime);
        long verify = Math.max(0, s.verifyTimeMs());
        ms.put("setup", setup);
        ms.put("rounds", rounds);
        ms.put("downtime", downtime);
        ms.put("verify", verify);
        ms.merge("other", Math.max(0, spent - setup - rounds - downtime - verify), Long::sum);
        markMs = now;
    }

    /** @return {"jvm-start": ms, ..., "wall-time": ms}: the phases so far and the wall time until now */
    ObjectNode toJson() {
        ObjectNode o = Json.object();
        ms.forEach(o::put);
        o.put("wall-time", uptimeMs());
        return o;
    }

    /** @return one line: "phases (ms): jvm-start 412, ..., wall-time 2210" */
    String line() {
        StringJoiner j = new StringJoiner(", ", "phases (ms): ", "");
        ms.forEach((k, v) -> j.add(k + " " + v));
        j.add(String.format(Locale.ROOT, "wall-time %d", uptimeMs()));
        return j.toString();
    }
}
