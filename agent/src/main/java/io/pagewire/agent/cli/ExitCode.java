package io.pagewire.agent.cli;

import io.pagewire.agent.MigrationStats;
import io.pagewire.transport.spi.TransportException;

/**
 * The exit codes of every {@code pagewire} command (docs/migration.md lists them). A script can
 * tell "try again" (transport) from "the migration itself failed" from "you called it wrong".
 */
public enum ExitCode {
    /** The migration completed (and the RAM matched, when verification was asked). */
    SUCCESS(0),
    /** The migration failed or was cancelled (policy, peer error, protocol violation, postcopy recovery gave up). */
    MIGRATION_FAILED(1),
    /** Bad command line: unknown option, malformed value or URI (nothing was started). */
    USAGE(2),
    /** The migration completed but the destination's RAM differs from the source's, or no verdict came. */
    VERIFICATION_MISMATCH(3),
    /** The transport failed: could not connect, bind or accept, handshake refused, connection lost, peer timed out. */
    TRANSPORT_ERROR(4);

    private final int code;

    ExitCode(int code) {
        this.code = code;
    }

    /** @return the process exit status */
    public int code() {
        return code;
    }

    /** @return whether a failure of this kind is the transport's (exit 4) rather than the migration's (exit 1) */
    static boolean isTransport(TransportException.Kind kind) {
        return switch (kind) {
            case UNAVAILABLE, CONNECT_FAILED, HANDSHAKE, CONNECTION_LOST, TIMEOUT -> true;
            default -> false;
        };
    }

    /**
     * @param stats a finished migration's statistics
     * @param verified the verdict: true, false, or null when not asked
     * @return the exit code it earns
     */
    static ExitCode of(MigrationStats stats, Boolean verified) {
        if (stats.status() == MigrationStats.Status.COMPLETED) {
            return verified == null || verified ? SUCCESS : VERIFICATION_MISMATCH;
        }
        return stats.failureKind() != null && isTransport(stats.failureKind()) ? TRANSPORT_ERROR : MIGRATION_FAILED;
    }
}
