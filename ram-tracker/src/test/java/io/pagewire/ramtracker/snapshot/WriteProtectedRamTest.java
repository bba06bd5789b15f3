package io.pagewire.ramtracker.snapshot;

import io.pagewire.ramtracker.Backing;
import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.linux.NativeMemory;
import io.pagewire.ramtracker.linux.Userfaultfd;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Synchronous write-protection: a write (from native code) to a protected page stops the writer and raises a
 * fault naming the page; the page is unchanged until the protection is lifted; lifting it lets the write
 * through. Never-populated pages are protected too (UFFD_FEATURE_WP_UNPOPULATED), and closing releases a
 * stopped writer.
 */
class WriteProtectedRamTest {
    static final long PAGE = 4096;

    private static GuestRegion open(GuestRam ram, Backing backing) {
        RegionSpec spec = backing == Backing.MEMFD ? RegionSpec.memfd("r", 64 * PAGE) : RegionSpec.anonymous("r", 64 * PAGE);
        GuestRegion region = ram.open(spec);
        String cause = WriteProtectedRam.unavailabilityCause(List.of(region));
        assumeTrue(cause == null, "synchronous userfaultfd write-protection with UFFD_FEATURE_WP_UNPOPULATED: " + cause);
        return region;
    }

    /** Waits (bounded by the test timeout) for the next write fault; returns its page. */
    private static long nextFault(WriteProtectedRam wp, MemorySegment buf) {
        long[] page = {-1};
        while (page[0] < 0) {
            wp.readFaults(buf, 1000, (r, p, tid) -> page[0] = p);
        }
        return page[0];
    }

    @ParameterizedTest
    @EnumSource(value = Backing.class, names = {"ANONYMOUS", "MEMFD"})
    void aWriteStopsUntilItsPageIsUnprotected(Backing backing) throws Exception {
        ExecutorService vcpu = Executors.newSingleThreadExecutor();
        try (GuestRam ram = GuestRam.create(); Arena arena = Arena.ofConfined()) {
            GuestRegion region = open(ram, backing);
            MemorySegment m = region.memory();
            NativeMemory.setLong(m, 5 * PAGE, 7); // populated; page 9 never is
            MemorySegment buf = arena.allocate(Userfaultfd.MSG_SIZE * 8L, 8);
            try (WriteProtectedRam wp = WriteProtectedRam.open(List.of(region))) {
                wp.protectAll();
                CompletableFuture<Void> write = CompletableFuture.runAsync(() -> NativeMemory.setLong(m, 5 * PAGE, 42), vcpu);
                assertEquals(5, nextFault(wp, buf));
                // The writer is stopped in the kernel: nothing resolves the fault but the unprotect below.
                assertFalse(write.isDone());
                assertEquals(7, NativeMemory.getLong(m, 5 * PAGE));
                wp.unprotect(0, 5, 1);
                write.get(30, TimeUnit.SECONDS);
                assertEquals(42, NativeMemory.getLong(m, 5 * PAGE));

                CompletableFuture<Void> hole = CompletableFuture.runAsync(() -> NativeMemory.setLong(m, 9 * PAGE, 1), vcpu);
                assertEquals(9, nextFault(wp, buf), "a never-populated page is protected too");
                assertFalse(hole.isDone());
                wp.unprotect(0, 9, 1);
                hole.get(30, TimeUnit.SECONDS);
            }
        } finally {
            vcpu.shutdownNow();
        }
    }

    @ParameterizedTest
    @EnumSource(value = Backing.class, names = {"ANONYMOUS", "MEMFD"})
    void closingReleasesAStoppedWriter(Backing backing) throws Exception {
        ExecutorService vcpu = Executors.newSingleThreadExecutor();
        try (GuestRam ram = GuestRam.create(); Arena arena = Arena.ofConfined()) {
            GuestRegion region = open(ram, backing);
            MemorySegment m = region.memory();
            MemorySegment buf = arena.allocate(Userfaultfd.MSG_SIZE * 8L, 8);
            CompletableFuture<Void> write;
            try (WriteProtectedRam wp = WriteProtectedRam.open(List.of(region))) {
                wp.protectAll();
                write = CompletableFuture.runAsync(() -> NativeMemory.setLong(m, 3 * PAGE, 99), vcpu);
                assertEquals(3, nextFault(wp, buf));
            }
            write.get(30, TimeUnit.SECONDS);
            assertEquals(99, NativeMemory.getLong(m, 3 * PAGE));
        } finally {
            vcpu.shutdownNow();
        }
    }
    /**
     * Fill on fault (a lazy apply): a page whose entry is dropped reads, after a fill fault, what was written
     * through a second mapping; the fill maps it write-protected, so a write to it then faults as a write; a
     * never-populated page raises a MISSING fill fault.
     */
    @org.junit.jupiter.api.Test
    void aDroppedPageIsFilledOnFaultAndStaysWriteProtected() throws Exception {
        ExecutorService vcpu = Executors.newSingleThreadExecutor();
        try (GuestRam ram = GuestRam.create(); Arena arena = Arena.ofShared()) {
            GuestRegion region = ram.open(RegionSpec.memfd("r", 64 * PAGE));
            String cause = WriteProtectedRam.unavailabilityCause(List.of(region), true);
            assumeTrue(cause == null, "userfaultfd MINOR and MISSING faults on shmem with write-protect: " + cause);
            MemorySegment m = region.memory();
            MemorySegment alias = region.mapAgain(arena);
            NativeMemory.setLong(m, 5 * PAGE, 7); // populated and mapped here; page 9 never is
            MemorySegment buf = arena.allocate(Userfaultfd.MSG_SIZE * 8L, 8);
            try (WriteProtectedRam wp = WriteProtectedRam.open(List.of(region), true)) {
                wp.protectAll();
                NativeMemory.setLong(alias, 5 * PAGE, 8); // the new content, through the second mapping
                io.pagewire.ramtracker.linux.Mappings.dontNeedRanges(new long[] {m.address() + 5 * PAGE}, new long[] {PAGE}, 1);
                CompletableFuture<Long> read = CompletableFuture.supplyAsync(() -> NativeMemory.getLong(m, 5 * PAGE), vcpu);
                boolean[] missing = {true};
                long[] page = {-1};
                while (page[0] < 0) {
                    wp.readFaults(buf, 1000, (r, p, tid) -> { throw new AssertionError("a write fault on a read"); },
                            (r, p, miss) -> { page[0] = p; missing[0] = miss; });
                }
                assertEquals(5, page[0]);
                assertFalse(missing[0], "page 5 is in the page cache: a MINOR fault");
                assertEquals(1, wp.fill(0, 5, 1));
                assertEquals(8, read.get(10, TimeUnit.SECONDS), "the read sees what the second mapping wrote");
                // Mapped write-protected: a write faults as a write.
                CompletableFuture<Void> write = CompletableFuture.runAsync(() -> NativeMemory.setLong(m, 5 * PAGE, 9), vcpu);
                assertEquals(5, nextFault(wp, buf));
                assertFalse(write.isDone());
                wp.unprotect(0, 5, 1);
                write.get(10, TimeUnit.SECONDS);
                assertEquals(9, NativeMemory.getLong(alias, 5 * PAGE));
                // A never-populated page: MISSING.
                CompletableFuture<Long> hole = CompletableFuture.supplyAsync(() -> NativeMemory.getLong(m, 9 * PAGE), vcpu);
                page[0] = -1;
                while (page[0] < 0) {
                    wp.readFaults(buf, 1000, (r, p, tid) -> { throw new AssertionError("a write fault on a read"); },
                            (r, p, miss) -> { page[0] = p; missing[0] = miss; });
                }
                assertEquals(9, page[0]);
                assertEquals(true, missing[0], "page 9 was never populated: a MISSING fault");
                io.pagewire.ramtracker.linux.Mappings.populateWrite(alias.asSlice(9 * PAGE, PAGE));
                assertEquals(1, wp.fill(0, 9, 1));
                assertEquals(0, hole.get(10, TimeUnit.SECONDS));
            }
        } finally {
            vcpu.shutdownNow();
        }
    }
}
