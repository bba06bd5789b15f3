package io.pagewire.transport.spi.tck;

import java.util.ArrayDeque;
import java.util.Deque;

/** What a test opened, closed in reverse order after it; the first failure is thrown, later ones suppressed into it. */
public final class Closer {
    private final Deque<AutoCloseable> open = new ArrayDeque<>();

    /** @return {@code c}, to be closed by {@link #closeAll} */
    public <T extends AutoCloseable> T add(T c) {
        open.push(c);
        return c;
    }

    /** Closes everything added, last first, also when one fails. */
    public void closeAll() throws Exception {
        Exception first = null;
        while (!open.isEmpty()) {
            try {
                open.pop().close();
            } catch (Exception e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
