/**
 * The pagewire agent: the migration engine and the {@code pagewire} command-line tool.
 * Transports are found at run time through {@link io.pagewire.transport.spi.Transports}.
 */
module io.pagewire.agent {
    requires io.pagewire.transport.spi;
    requires io.pagewire.ramtracker;
    requires info.picocli;
    requires java.management;
    requires jdk.jfr;
    requires transitive tools.jackson.databind; // MigrationStats.toJson() returns a Jackson tree
    requires HdrHistogram;

    opens io.pagewire.agent.cli to info.picocli;
    exports io.pagewire.agent;
    exports io.pagewire.agent.snapshot;
    exports io.pagewire.agent.replica;
}
