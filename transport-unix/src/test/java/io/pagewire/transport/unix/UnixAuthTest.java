package io.pagewire.transport.unix;

import io.pagewire.transport.spi.tck.AuthTck;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;

/** The TCK's authentication cases over unix domain sockets, with two background channels. */
class UnixAuthTest extends AuthTck {
    private static final Path DIR;
    private final AtomicInteger next = new AtomicInteger();

    static {
        try {
            DIR = Files.createTempDirectory("pagewire-unix-auth");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    protected String listenUri() {
        return "unix://" + DIR.resolve("auth-" + next.incrementAndGet() + ".sock") + "?channels=2";
    }
}
