package io.pagewire.ramtracker.postcopy;

import io.pagewire.ramtracker.GuestRam;
import io.pagewire.ramtracker.GuestRegion;
import io.pagewire.ramtracker.RegionSpec;
import io.pagewire.ramtracker.linux.NativeMemory;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Real userfaultfd: guest threads block on missing pages; a fault thread and a background pusher place them. */
@Timeout(60)
class PostcopyRegionTest {
    private static final long PAGES = 8192;

    /** A memfd region of {@code pages} 4 KiB pages (MINOR mode), or the test is skipped where postcopy is unavailable. */
    private static GuestRegion memfdRegion(GuestRam ram, long pages) {
        GuestRegion region = ram.open(RegionSpec.memfd("pc.ram", pages * 4096));
        String cause = PostcopyRegion.unavailabilityCause(region);
        assumeTrue(cause == null, () -> "postcopy unavailable: " + cause);
        return region;
    }

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"anonymous", "memfd"})
    void faultingThreadsGetExactlyTheSourcePagesWhileABackgroundPushRaces(String backing) throws Exception {
        try (GuestRam ram = GuestRam.create(); Arena arena = Arena.ofShared()) {
            GuestRegion region = ram.open(backing.equals("memfd") ? RegionSpec.memfd("pc.ram", PAGES * 4096)
                    : RegionSpec.anonymous("pc.ram", PAGES * 4096));
            String cause = PostcopyRegion.unavailabilityCause(region);
            assumeTrue(cause == null, () -> "postcopy unavailable: " + cause);
            MemorySegment source = arena.allocate(PAGES * 4096, 4096);
            for (long p = 0; p < PAGES; p++) {
                source.set(ValueLayout.JAVA_LONG, p * 4096, p * 31 + 7);
                source.set(ValueLayout.JAVA_LONG, p * 4096 + 4088, ~p);
            }
            try (PostcopyRegion pc = PostcopyRegion.open(region)) {
                // Before postcopy: the first quarter arrived in precopy (written through the alias, not mapped).
                long early = PAGES / 4;
                MemorySegment.copy(source, 0, pc.alias(), 0, early * 4096);
                // Pages 100..199 were dirtied at the source afterwards: stale here, discarded.
                pc.discard(100, 100);
                pc.start();
                if (pc.mode() == PostcopyRegion.Mode.MISSING) {
                    // As the destination's mapper does: pages from precopy are mapped already, only claim them.
                    pc.mapPresent(0, 100, null);
                    pc.mapPresent(200, early - 200, null);
                }

                AtomicBoolean stop = new AtomicBoolean();
                AtomicLong minor = new AtomicLong();
                AtomicLong missing = new AtomicLong();
                AtomicReference<Throwable> failure = new AtomicReference<>();
                ConcurrentHashMap<Long, Boolean> requested = new ConcurrentHashMap<>();
                Thread faults = Thread.ofPlatform().start(() -> {
                    MemorySegment buf = Arena.ofAuto().allocate(32 * 64);
                    try {
                        while (!stop.get()) {
                            pc.readFaults(buf, 50, (page, tid, isMinor) -> {
                                if (isMinor) {
                                    minor.incrementAndGet();
                                    pc.mapPresent(page, 1, null);
                                } else {
                                    missing.incrementAndGet();
                                    requested.put(page, true);
                                    // The "source" answers at once.
                                    pc.place(page, 1, source.asSlice(page * 4096, 4096), null);
                                }
                            });
                        }
                    } catch (Throwable t) {
                        failure.set(t);
                    }
                });
                // A background push racing the answers, from the back.
                Thread push = Thread.ofPlatform().start(() -> {
                    for (long p = PAGES - 1; p >= early && !stop.get(); p -= 7) {
                        pc.place(p, 1, source.asSlice(p * 4096, 4096), null);
                    }
                });
                // Guest vCPUs read every page, in different orders, from native code as every access to
                // userfaultfd-registered memory must be (a fault in Java code can hang the JVM at a safepoint).
                List<Thread> vcpus = new ArrayList<>();
                MemorySegment guest = region.memory();
                for (int v = 0; v < 3; v++) {
                    int id = v;
                    vcpus.add(Thread.ofPlatform().start(() -> {
                        for (long i = 0; i < PAGES; i++) {
                            long p = (i * (2 * id + 1) + id * 1000) % PAGES;
                            long a = NativeMemory.getLong(guest, p * 4096);
                            long b = NativeMemory.getLong(guest, p * 4096 + 4088);
                            if (a != p * 31 + 7 || b != ~p) {
                                failure.compareAndSet(null, new AssertionError("vCPU " + id + " read page " + p + " wrong: " + a + "/" + b));
                            }
                        }
                    }));
                }
                for (Thread t : vcpus) {
                    t.join();
                }
                stop.set(true);
                push.join();
                faults.join();
                assertNull(failure.get(), () -> String.valueOf(failure.get()));
                assertEquals(PAGES, pc.placedCount());
                if (pc.mode() == PostcopyRegion.Mode.MINOR) {
                    assertTrue(minor.get() > 0, "pages that arrived in precopy are mapped locally on a MINOR fault");
                } else {
                    assertEquals(0, minor.get(), "MISSING mode: pages from precopy are mapped already");
                }
                assertTrue(missing.get() > 0, "missing pages fault MISSING");
                assertTrue(requested.keySet().stream().noneMatch(p -> p < early && (p < 100 || p >= 200)),
                        "a page present and current is never asked of the source");
                assertEquals(-1, NativeMemory.mismatch(source, guest.asSlice(0, PAGES * 4096)));
            }
        }
    }

    @org.junit.jupiter.api.Test
    void minorModeDiscardKeepsTheStalePageAllocatedAndTheGuestFaultsMinorOnIt() throws Exception {
        long pages = 64;
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion region = memfdRegion(ram, pages);
            try (PostcopyRegion pc = PostcopyRegion.open(region); Arena arena = Arena.ofShared()) {
                assertEquals(PostcopyRegion.Mode.MINOR, pc.mode());
                for (long p = 0; p < pages; p++) {
                    pc.alias().set(ValueLayout.JAVA_LONG, p * 4096, 1000 + p); // arrived in precopy
                }
                // The guest mapping had page 12 mapped (as a precopy zero-run write would leave it).
                NativeMemory.getLong(region.memory(), 12 * 4096);
                pc.discard(10, 5); // 10..14 went stale at the source
                assertEquals(1012, pc.alias().get(ValueLayout.JAVA_LONG, 12 * 4096), "the stale page stays allocated");
                pc.start();
                pc.mapPresent(0, 10, null);
                pc.mapPresent(15, pages - 15, null);
                MemorySegment fresh = arena.allocate(4096, 4096);
                fresh.set(ValueLayout.JAVA_LONG, 0, 2012);
                AtomicReference<Boolean> minorFault = new AtomicReference<>();
                AtomicReference<Throwable> failure = new AtomicReference<>();
                AtomicBoolean stop = new AtomicBoolean();
                Thread faults = Thread.ofPlatform().start(() -> {
                    MemorySegment buf = Arena.ofAuto().allocate(32 * 64);
                    try {
                        while (!stop.get()) {
                            pc.readFaults(buf, 50, (page, tid, isMinor) -> {
                                minorFault.compareAndSet(null, isMinor);
                                assertEquals(12, page);
                                pc.place(page, 1, fresh, null); // the current copy from the source
                            });
                        }
                    } catch (Throwable t) {
                        failure.set(t);
                    }
                });
                long read = NativeMemory.getLong(region.memory(), 12 * 4096);
                stop.set(true);
                faults.join();
                assertNull(failure.get(), () -> String.valueOf(failure.get()));
                assertEquals(2012, read, "the guest reads the placed page, never the stale one");
                assertEquals(Boolean.TRUE, minorFault.get(), "a stale page kept in the page cache faults MINOR");
                assertEquals(1000, NativeMemory.getLong(region.memory(), 0), "pages mapped as present read as they are");
            }
        }
    }

    @org.junit.jupiter.api.Test
    void reservedPagesAreClaimedWholeOrNotAtAllAndAnAbandonedReservationGivesThemBack() throws Exception {
        long pages = 64;
        try (GuestRam ram = GuestRam.create()) {
            GuestRegion region = memfdRegion(ram, pages);
            try (PostcopyRegion pc = PostcopyRegion.open(region)) {
                MemorySegment before = pc.reserve(40, 4);
                assertEquals(pc.alias().address() + 40 * 4096, before.address(), "before the start: the pages' place in the alias");
                assertEquals(0, pc.placedCount(), "before the start nothing is claimed");
                pc.start();
                MemorySegment first = pc.reserve(0, 16);
                assertTrue(first != null && pc.isReserved(0, first));
                assertTrue(pc.isPlaced(3) && !pc.isMapped(3), "reserved: claimed, not yet mapped");
                assertNull(pc.reserve(8, 16), "overlaps a reservation: nothing reserved");
                assertTrue(!pc.isPlaced(16) && !pc.isPlaced(23), "a refused reservation gives back what it claimed");
                pc.abandon(0, 16);
                assertEquals(0, pc.placedCount(), "an abandoned reservation is unclaimed");

                // A vCPU faults on page 3 while its frame lands in reserved memory; mapping the frame wakes it.
                MemorySegment frame = pc.reserve(0, 16);
                AtomicReference<Throwable> failure = new AtomicReference<>();
                AtomicBoolean stop = new AtomicBoolean();
                AtomicLong faulted = new AtomicLong(-1);
                Thread faults = Thread.ofPlatform().start(() -> {
                    MemorySegment buf = Arena.ofAuto().allocate(32 * 64);
                    try {
                        while (!stop.get()) {
                            pc.readFaults(buf, 50, (page, tid, isMinor) -> faulted.set(page));
                        }
                    } catch (Throwable t) {
                        failure.set(t);
                    }
                });
                AtomicLong read = new AtomicLong();
                Thread vcpu = Thread.ofPlatform().start(() -> read.set(NativeMemory.getLong(region.memory(), 3 * 4096)));
                long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(30);
                while (faulted.get() != 3 && System.nanoTime() < deadline) {
                    Thread.onSpinWait();
                }
                assertEquals(3, faulted.get(), "the vCPU faulted on the reserved page");
                for (long p = 0; p < 16; p++) {
                    frame.set(ValueLayout.JAVA_LONG, p * 4096, 500 + p); // the transport receiving the frame
                }
                assertEquals(16, pc.placeReserved(0, 16, null));
                vcpu.join();
                stop.set(true);
                faults.join();
                assertNull(failure.get(), () -> String.valueOf(failure.get()));
                assertEquals(503, read.get(), "the vCPU reads the page that landed in its reserved memory");
                assertTrue(pc.isMapped(15));
                assertEquals(16, pc.placedCount());
            }
        }
    }
}
