package io.pagewire.ramtracker.dirty;

import io.pagewire.ramtracker.bitmap.DirtyBitmap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** KVM_GET_DIRTY_LOG-format bitmaps fed by a "VMM" thread, collected into region bitmaps. */
class ExternalDirtyLogTest {
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    /** A KVM-format log for a slot of {@code pages} pages with the given slot-relative bits. */
    static long[] log(int pages, BitSet bits) {
        long[] words = new long[(pages + 63) / 64];
        bits.stream().forEach(b -> words[b >>> 6] |= 1L << b);
        return words;
    }

    static BitSet dirty(DirtyBitmap d) {
        BitSet b = new BitSet();
        for (long p = d.nextDirty(0, d.pageCount()); p < d.pageCount(); p = d.nextDirty(p + 1, d.pageCount())) {
            b.set(Math.toIntExact(p));
        }
        return b;
    }

    @Test
    void slotsAtUnalignedOffsetsLandOnTheirRegionPages() {
        int regionPages = 20000;
        ExternalDirtyLog log = new ExternalDirtyLog("region 'pc.ram'", regionPages, arena);
        int vga = log.addSlot(13, 2048);           // like QEMU's VGA RAM: not 64-aligned
        int main = log.addSlot(2112, 17000);        // 64-aligned
        assertFalse(log.feed(vga, MemorySegment.ofArray(log(2048, BitSet.valueOf(new long[] {1})))), "ignored before start");
        log.start();
        Random rnd = new Random(7);
        BitSet vgaBits = new BitSet();
        BitSet mainBits = new BitSet();
        for (int i = 0; i < 300; i++) {
            vgaBits.set(rnd.nextInt(2048));
            mainBits.set(rnd.nextInt(17000));
        }
        vgaBits.set(0);
        vgaBits.set(2047);
        assertTrue(log.feed(vga, MemorySegment.ofArray(log(2048, vgaBits))));
        assertTrue(log.feed(main, MemorySegment.ofArray(log(17000, mainBits))));
        BitSet expected = new BitSet();
        vgaBits.stream().forEach(b -> expected.set(13 + b));
        mainBits.stream().forEach(b -> expected.set(2112 + b));

        DirtyBitmap chunked = DirtyBitmap.allocate(regionPages, arena);
        // Chunks that cut through both slots at odd places.
        long reported = log.collect(chunked, 0, 1000) + log.collect(chunked, 1000, 3333) + log.collect(chunked, 4333, regionPages - 4333);
        assertEquals(expected.cardinality(), reported);
        assertEquals(expected, dirty(chunked));
        assertEquals(0, log.collect(DirtyBitmap.allocate(regionPages, arena)), "collected bits are taken");
        log.stop();
        assertFalse(log.isTracking());
        assertFalse(log.feed(main, MemorySegment.ofArray(log(17000, mainBits))));
    }

    @Test
    void bitsPastTheSlotAreIgnoredAndBadInputIsNamed() {
        ExternalDirtyLog log = new ExternalDirtyLog("region 'r'", 1000, arena);
        int s = log.addSlot(100, 70);
        log.start();
        log.feed(s, MemorySegment.ofArray(new long[] {0, -1L})); // bits 64..127; slot has 70 pages
        DirtyBitmap d = DirtyBitmap.allocate(1000, arena);
        assertEquals(6, log.collect(d));
        assertEquals(6, d.count(164, 6));
        assertEquals(6, d.count(), "nothing marked outside the slot");
        IllegalArgumentException shortLog = assertThrows(IllegalArgumentException.class, () -> log.feed(s, MemorySegment.ofArray(new long[1])));
        assertEquals("region 'r': dirty log for slot 0 has 8 bytes; its 70 pages need 16 (one 64-bit word per 64 pages)", shortLog.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> log.feed(1, MemorySegment.ofArray(new long[2])));
        assertThrows(IllegalArgumentException.class, () -> log.addSlot(150, 10));
        assertThrows(IndexOutOfBoundsException.class, () -> log.addSlot(990, 11));
    }

    @Test
    void bitsFedWhileCollectingAreCollectedThenOrNextNeverLost() throws Exception {
        int regionPages = 70000;
        ExternalDirtyLog log = new ExternalDirtyLog("region 'r'", regionPages, arena);
        int[] firstPages = {5, 9000, 40001};
        int[] slotPages = {8000, 30000, 29000};
        for (int i = 0; i < 3; i++) {
            log.addSlot(firstPages[i], slotPages[i]);
        }
        log.start();
        BitSet fed = new BitSet();
        AtomicBoolean done = new AtomicBoolean();
        AtomicInteger feeds = new AtomicInteger();
        AtomicInteger collectsStarted = new AtomicInteger();
        DirtyBitmap collected = DirtyBitmap.allocate(regionPages, arena);
        try (ExecutorService vmm = Executors.newSingleThreadExecutor()) {
            Future<?> feeder = vmm.submit(() -> {
                Random rnd = new Random(99);
                for (int round = 0; round < 400; round++) {
                    // Halfway, wait until a collect has started: at least one collect overlaps the feeding
                    // and one follows it, however fast this machine is.
                    while (round == 200 && collectsStarted.get() == 0 && !Thread.currentThread().isInterrupted()) {
                        Thread.onSpinWait();
                    }
                    int slot = rnd.nextInt(3);
                    BitSet bits = new BitSet();
                    for (int k = 0; k < 50; k++) {
                        bits.set(rnd.nextInt(slotPages[slot]));
                    }
                    log.feed(slot, MemorySegment.ofArray(log(slotPages[slot], bits)));
                    bits.stream().forEach(b -> fed.set(firstPages[slot] + b));
                    feeds.incrementAndGet();
                }
                done.set(true);
            });
            int collects = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            boolean last = false;
            while (!last) {
                last = done.get();
                assertTrue(System.nanoTime() < deadline, "feeder did not finish within 30 s");
                collectsStarted.incrementAndGet();
                log.collect(collected, 0, regionPages / 2);
                log.collect(collected, regionPages / 2, regionPages - regionPages / 2);
                collects++;
            }
            feeder.get(10, TimeUnit.SECONDS);
            assertTrue(collects >= 2, "the feeder waited for a collect, so one ran during and one after the feeding: " + collects);
        }
        assertEquals(400, feeds.get());
        assertEquals(fed, dirty(collected));
    }
}
