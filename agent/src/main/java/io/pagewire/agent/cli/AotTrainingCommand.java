package io.pagewire.agent.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.io.Writer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * {@code pagewire aot-training} (hidden): the training run for the launcher's AOT cache (JEP 483/514/515).
 *
 * <p>One JVM runs both sides of small migrations over loopback, {@code receive} on one thread and {@code send} on
 * this one, exactly as the commands do (the same picocli entry points, the same engines): a precopy migration with
 * a writing guest, then a postcopy one. The JVM that runs this with {@code -XX:AOTCacheOutput} records every class
 * both roles load and link and the methods' profiles, so one cache serves every command: the source's, the
 * destination's (the demo's destination JVM inherits the cache flag) and the others'. The launcher makes the cache
 * after each build ({@code pagewire} script, docs/architecture.md).
 */
@Command(name = "aot-training", hidden = true, mixinStandardHelpOptions = true,
        description = "Training run for the launcher's AOT cache: small loopback migrations with both sides in this JVM.")
final class AotTrainingCommand implements java.util.concurrent.Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--ram", defaultValue = "256M", paramLabel = "SIZE", description = "guest RAM of each training migration (default ${DEFAULT-VALUE})")
    long ram;

    @Override
    public Integer call() throws Exception {
        PrintWriter err = spec.commandLine().getErr();
        List<String> failures = new ArrayList<>();
        run(List.of("--pattern", "random", "--dirty-rate", "64M", "--working-set", "64M"), List.of(), failures);
        if (io.pagewire.ramtracker.linux.Userfaultfd.isAvailable()) {
            run(List.of("--postcopy", "--postcopy-after-rounds", "0", "--pattern", "random", "--working-set", "64M"),
                    List.of("--postcopy", "--backing", "memfd"), failures);
        } else {
            err.println("pagewire aot-training: userfaultfd unavailable, postcopy not trained");
        }
        if (!failures.isEmpty()) {
            err.println("pagewire aot-training: " + String.join("; ", failures));
            return ExitCode.MIGRATION_FAILED.code();
        }
        return ExitCode.SUCCESS.code();
    }

    /** One migration: {@code receive} on a thread of its own, {@code send} here; failures are collected with their output. */
    private void run(List<String> sendArgs, List<String> receiveArgs, List<String> failures) throws Exception {
        String size = Long.toString(ram);
        LineCapture dstOut = new LineCapture("LISTENING ");
        StringBuilderWriter dstErr = new StringBuilderWriter();
        List<String> receive = new ArrayList<>(List.of("receive", "--listen", "tcp://127.0.0.1:0", "--ram", size, "--quiet"));
        receive.addAll(receiveArgs);
        CompletableFuture<Integer> dst = new CompletableFuture<>();
        Thread.ofPlatform().name("aot-training-destination").start(() -> {
            try {
                dst.complete(PagewireCommand.commandLine().setOut(new PrintWriter(dstOut, true)).setErr(new PrintWriter(dstErr, true))
                        .execute(receive.toArray(String[]::new)));
            } catch (Throwable t) {
                dst.completeExceptionally(t);
            }
        });
        String listening;
        try {
            listening = dstOut.line.get(30, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            failures.add("the destination did not listen within 30 s: " + dstErr);
            return;
        }
        List<String> send = new ArrayList<>(List.of("send", "--to", listening.substring("LISTENING ".length()).trim(), "--ram", size, "--json"));
        send.addAll(sendArgs);
        StringBuilderWriter srcOut = new StringBuilderWriter();
        StringBuilderWriter srcErr = new StringBuilderWriter();
        int src = PagewireCommand.commandLine().setOut(new PrintWriter(srcOut, true)).setErr(new PrintWriter(srcErr, true))
                .execute(send.toArray(String[]::new));
        int rc;
        try {
            rc = dst.get(60, TimeUnit.SECONDS);
        } catch (ExecutionException | TimeoutException e) {
            failures.add(String.join(" ", send) + ": the destination did not end: " + e + " " + dstErr);
            return;
        }
        if (src != 0 || rc != 0) {
            failures.add(String.join(" ", send) + ": source exit " + src + " (" + srcErr.toString().strip() + "), destination exit " + rc
                    + " (" + dstErr.toString().strip() + ")");
        }
    }

    /** Collects text; completes {@link #line} with the first line starting with a prefix. */
    private static final class LineCapture extends StringBuilderWriter {
        final CompletableFuture<String> line = new CompletableFuture<>();
        private final String prefix;

        LineCapture(String prefix) {
            this.prefix = prefix;
        }

        @Override
        public synchronized void write(char[] cbuf, int off, int len) {
            super.write(cbuf, off, len);
            if (!line.isDone()) {
                String all = toString();
                int at = all.indexOf(prefix);
                int end = at < 0 ? -1 : all.indexOf('\n', at);
                if (end > 0) {
                    line.complete(all.substring(at, end));
                }
            }
        }
    }

    /** A {@link Writer} into a string builder (thread-safe). */
    private static class StringBuilderWriter extends Writer {
        private final StringBuilder text = new StringBuilder();

        @Override
        public synchronized void write(char[] cbuf, int off, int len) {
            text.append(cbuf, off, len);
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }

        @Override
        public synchronized String toString() {
            return text.toString();
        }
    }
}
