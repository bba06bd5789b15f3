package io.pagewire.linux;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Unix domain sockets and descriptor passing, over real sockets and a real memfd. */
@Timeout(30)
class UnixSocketTest {
    @TempDir
    Path dir;

    @Test
    void bytesAndADescriptorArriveAndMapTheSameMemory() throws Exception {
        Path path = dir.resolve("s.sock");
        int memfd = FileDescriptors.memfd("unix-socket-test", 1 << 20);
        try (NativeSocket server = NativeSocket.listen(path, 4);
             NativeSocket client = NativeSocket.connect(path);
             NativeSocket accepted = server.accept(10_000);
             Arena arena = Arena.ofConfined()) {
            assertTrue(accepted.isUnix());
            assertTrue(accepted.peerName().contains("pid " + ProcessHandle.current().pid()), accepted.peerName());
            MemorySegment out = arena.allocateFrom(ValueLayout.JAVA_BYTE, new byte[]{1, 2, 3, 4, 5});
            client.sendWithFds(out, new int[]{memfd});
            MemorySegment in = arena.allocate(5);
            int[] fds = accepted.recvWithFds(in, 0, 5, 4);
            assertArrayEquals(new byte[]{1, 2, 3, 4, 5}, in.toArray(ValueLayout.JAVA_BYTE));
            assertEquals(1, fds.length);
            assertNotEquals(memfd, fds[0], "the receiver gets its own descriptor");
            assertEquals(1 << 20, FileDescriptors.regularFileSize(fds[0], "the received memfd"));
            MemorySegment mine = FileDescriptors.mapShared(memfd, 0, 1 << 20, arena);
            MemorySegment theirs = FileDescriptors.mapShared(fds[0], 0, 1 << 20, arena);
            mine.set(ValueLayout.JAVA_LONG, 4096, 0x1234_5678_9abcL);
            assertEquals(0x1234_5678_9abcL, theirs.get(ValueLayout.JAVA_LONG, 4096), "both map the same pages");
            FileDescriptors.close(fds[0]);
        } finally {
            FileDescriptors.close(memfd);
        }
    }

    @Test
    void tooManyDescriptorsAreClosedAndRefused() throws Exception {
        Path path = dir.resolve("t.sock");
        int a = FileDescriptors.memfd("a", 4096);
        int b = FileDescriptors.memfd("b", 4096);
        try (NativeSocket server = NativeSocket.listen(path, 4);
             NativeSocket client = NativeSocket.connect(path);
             NativeSocket accepted = server.accept(10_000);
             Arena arena = Arena.ofConfined()) {
            client.sendWithFds(arena.allocate(1), new int[]{a, b});
            IOException e = assertThrows(IOException.class, () -> accepted.recvWithFds(arena.allocate(1), 0, 1, 1));
            assertTrue(e.getMessage().contains("more than 1 descriptors"), e.getMessage());
        } finally {
            FileDescriptors.close(a);
            FileDescriptors.close(b);
        }
    }

    @Test
    void aSocketIsNoRegularFileAndLongPathsAreRefused() throws Exception {
        Path path = dir.resolve("u.sock");
        try (NativeSocket server = NativeSocket.listen(path, 1)) {
            IOException e = assertThrows(IOException.class, () -> FileDescriptors.regularFileSize(server.fd(), "a socket"));
            assertTrue(e.getMessage().contains("not a regular file"), e.getMessage());
            assertThrows(IllegalStateException.class, () -> server.noDelay(true));
        }
        Path tooLong = dir.resolve("x".repeat(NativeSocket.maxUnixPathBytes()));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> NativeSocket.listen(tooLong, 1));
        assertTrue(e.getMessage().contains("expected 1.." + NativeSocket.maxUnixPathBytes()), e.getMessage());
    }
}
