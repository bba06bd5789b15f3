package io.pagewire.transport.aeron;

import io.aeron.ExclusivePublication;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.UnsafeBuffer;

import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/** Waiting for a condition with a deadline, with an idle strategy (the handshake and other rare paths). */
final class Await {
    private Await() {
    }

    /** @return an idle strategy for handshake waits: short spins, then parks of up to 1 ms */
    static IdleStrategy idle() {
        return new BackoffIdleStrategy(10, 10, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MILLISECONDS.toNanos(1));
    }

    /**
     * Waits until {@code condition} holds.
     *
     * @param deadlineNs {@link System#nanoTime()} deadline
     * @return true when it held before the deadline
     */
    static boolean until(BooleanSupplier condition, long deadlineNs) {
        IdleStrategy idle = idle();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadlineNs > 0) {
                return false;
            }
            if (Thread.currentThread().isInterrupted()) {
                throw new TransportException(Kind.CLOSED, "interrupted while waiting");
            }
            idle.idle();
        }
        return true;
    }

    /**
     * Waits for the resolved endpoint of a UDP subscription (its bound port).
     *
     * @return the port
     */
    static int boundPort(Subscription sub, String what, long deadlineNs) {
        String[] endpoint = new String[1];
        if (!until(() -> (endpoint[0] = sub.resolvedEndpoint()) != null, deadlineNs)) {
            throw new TransportException(Kind.CONNECT_FAILED, "aeron: " + what + " (" + sub.channel() + ") did not report its bound"
                    + " address in time");
        }
        String e = endpoint[0];
        return Integer.parseInt(e.substring(e.lastIndexOf(':') + 1));
    }

    /**
     * Offers one message, waiting out back pressure until the deadline.
     *
     * @return the stream position, or the negative code that ended the attempt
     */
    static long offer(ExclusivePublication pub, byte[] message, long deadlineNs) {
        DirectBuffer buffer = new UnsafeBuffer(message);
        IdleStrategy idle = idle();
        while (true) {
            long r = pub.offer(buffer, 0, message.length);
            if (r > 0 || (r != Publication.BACK_PRESSURED && r != Publication.ADMIN_ACTION && r != Publication.NOT_CONNECTED)) {
                return r;
            }
            if (System.nanoTime() - deadlineNs > 0) {
                return r;
            }
            idle.idle();
        }
    }
}
