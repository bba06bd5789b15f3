package io.pagewire.agent.cli;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** Runs {@code tick} on its own daemon thread every interval, and once more when closed (the final state). */
final class Periodic implements AutoCloseable {
    private final Runnable tick;
    private final CountDownLatch stop = new CountDownLatch(1);
    private final Thread thread;

    Periodic(String name, Duration every, Runnable tick) {
        this.tick = tick;
        long ns = Math.max(every.toNanos(), TimeUnit.MILLISECONDS.toNanos(10));
        thread = Thread.ofPlatform().daemon().name(name).start(() -> {
            try {
                while (!stop.await(ns, TimeUnit.NANOSECONDS)) {
                    tick.run();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
    }

    @Override
    public void close() {
        stop.countDown();
        try {
            thread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        tick.run();
    }
}
