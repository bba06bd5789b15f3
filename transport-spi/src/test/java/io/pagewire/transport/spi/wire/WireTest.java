package io.pagewire.transport.spi.wire;

import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

class WireTest {
    private static final List<RegionDescriptor> REGIONS = List.of(
            new RegionDescriptor("pc.ram", 1L << 30, 4096), new RegionDescriptor("bigpages", 1L << 32, 64 << 10));

    @Test
    void headerRoundTrip() {
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        h.encode(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST, 1, 0x1_0000_0001L, 7, 7 * 4096);
        FrameHeader r = new FrameHeader(h.segment()).decode();
        assertEquals(FrameType.PAGES, r.type());
        assertEquals(1, r.region());
        assertEquals(0x1_0000_0001L, r.first());
        assertEquals(7, r.count());
        assertEquals(7 * 4096, r.payloadLength());
        assertTrue(r.hasDataDigest());
        // Big-endian on the wire: the type is in bytes 0..1, most significant first.
        assertEquals(0, h.segment().get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(FrameType.PAGES, h.segment().get(ValueLayout.JAVA_BYTE, 1));
    }

    @Test
    void everySingleBitFlipInAHeaderIsDetected() {
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        h.encode(FrameType.ZERO_RUN, 0, 0, 12345, 678, 0);
        MemorySegment s = h.segment();
        for (int bit = 0; bit < FrameHeader.LENGTH * 8; bit++) {
            byte b = s.get(ValueLayout.JAVA_BYTE, bit / 8);
            s.set(ValueLayout.JAVA_BYTE, bit / 8, (byte) (b ^ (1 << (bit % 8))));
            assertThrows(WireException.class, () -> new FrameHeader(s).decode(), "bit " + bit);
            s.set(ValueLayout.JAVA_BYTE, bit / 8, b);
        }
        new FrameHeader(s).decode();
    }

    @Test
    void helloRoundTrip() {
        Hello h = new Hello(42, Hello.FLAG_DATA_DIGEST, 4, 256 << 10, 500, 5000, REGIONS);
        MemorySegment buf = Arena.ofAuto().allocate(h.encodedLength());
        assertEquals(h.encodedLength(), h.encode(buf));
        assertEquals(h, Hello.decode(buf, (int) buf.byteSize()));
    }

    /** Found by the hostile source (conformance/hostile_source.py): u32 timeouts of 2^31 and above were shown negative. */
    @Test
    void helloTimeoutsAreShownUnsigned() {
        Hello h = new Hello(42, 0, 2, 256 << 10, 500, 5000, REGIONS);
        byte[] b = new byte[h.encodedLength()];
        h.encode(MemorySegment.ofArray(b));
        MemorySegment.ofArray(b).set(Wire.U32, 24, 0xFFFF_FFFF);
        WireException e = assertThrows(WireException.class, () -> Hello.decode(MemorySegment.ofArray(b), b.length));
        assertTrue(e.getMessage().contains("peer timeout 4294967295 ms"), e.getMessage());
        MemorySegment.ofArray(b).set(Wire.U32, 24, 5000);
        MemorySegment.ofArray(b).set(Wire.U32, 20, 0x8000_0000);
        e = assertThrows(WireException.class, () -> Hello.decode(MemorySegment.ofArray(b), b.length));
        assertTrue(e.getMessage().contains("heartbeat 2147483648 ms"), e.getMessage());
    }

    @Test
    void mutatedAndRandomHellosFailOnlyWithWireExceptions() {
        Hello h = new Hello(42, 0, 2, 256 << 10, 500, 5000, REGIONS);
        byte[] valid = new byte[h.encodedLength()];
        h.encode(MemorySegment.ofArray(valid));
        Random rnd = new Random(2024);
        int rejected = 0;
        for (int i = 0; i < 20_000; i++) {
            byte[] b;
            if (i % 2 == 0) {
                b = valid.clone();
                for (int k = 1 + rnd.nextInt(4); k > 0; k--) {
                    b[rnd.nextInt(b.length)] = (byte) rnd.nextInt();
                }
                if (rnd.nextBoolean()) {
                    b = java.util.Arrays.copyOf(b, rnd.nextInt(b.length + 1));
                }
            } else {
                b = new byte[rnd.nextInt(200)];
                rnd.nextBytes(b);
            }
            try {
                Hello.decode(MemorySegment.ofArray(b), b.length);
            } catch (WireException e) {
                rejected++;
            } catch (RuntimeException e) {
                fail("hostile HELLO #" + i + " raised " + e + " instead of a WireException", e);
            }
        }
        assertTrue(rejected > 10_000, "most mutations must be rejected: " + rejected);
    }

    @Test
    void validatorAcceptsLegalFrames() {
        FrameValidator v = new FrameValidator(REGIONS, 256 << 10, true);
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        v.validate(h.encode(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST, 0, (1L << 18) - 64, 64, 64 * 4096), Role.DESTINATION, LaneKind.BACKGROUND);
        v.validate(h.encode(FrameType.ZERO_RUN, 0, 1, 0, 2048, 0), Role.DESTINATION, LaneKind.BACKGROUND);
        v.validate(h.encode(FrameType.PAGE_REQUEST, 0, 0, 5, 1, 0), Role.SOURCE, LaneKind.URGENT);
        v.validate(h.encode(FrameType.ROUND_END, 0, 0, 3, 0, 0), Role.DESTINATION, LaneKind.BACKGROUND);
        v.validate(h.encode(FrameType.COMPLETE, 0, 0, 0, 99, 0), Role.DESTINATION, LaneKind.BACKGROUND);
        v.validate(h.encode(FrameType.COMPLETE, 0, 0, 0, 0, 0), Role.SOURCE, LaneKind.URGENT);
        v.validate(h.encode(FrameType.CONTROL, 0, 0, 0, 0, Wire.MAX_CONTROL_BYTES), Role.SOURCE, LaneKind.URGENT);
    }

    @Test
    void validatorNamesValueAndBound() {
        FrameValidator v = new FrameValidator(REGIONS, 256 << 10, true);
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        expect(v, h.encode(FrameType.PAGES, 1, 2, 0, 1, 4096), Role.DESTINATION, LaneKind.BACKGROUND, "region id 2 outside 0..1");
        expect(v, h.encode(FrameType.PAGES, 1, 0, 1L << 18, 1, 4096), Role.DESTINATION, LaneKind.BACKGROUND, "of 262144 pages");
        expect(v, h.encode(FrameType.PAGES, 1, 0, 0, 65, 65 * 4096), Role.DESTINATION, LaneKind.BACKGROUND, "page count 65 outside 1..64");
        expect(v, h.encode(FrameType.PAGES, 1, 1, 0, 1, 4096), Role.DESTINATION, LaneKind.BACKGROUND, "payload length 4096 != page count 1 x page size 65536");
        expect(v, h.encode(FrameType.PAGES, 0, 0, 0, 1, 4096), Role.DESTINATION, LaneKind.BACKGROUND, "no data digest");
        expect(v, h.encode(FrameType.PAGES, 1, 0, 0, 1, 4096), Role.SOURCE, LaneKind.URGENT, "only be sent to the destination");
        expect(v, h.encode(FrameType.ZERO_RUN, 0, 0, Long.MAX_VALUE, 2, 0), Role.DESTINATION, LaneKind.BACKGROUND, "outside region 0");
        expect(v, h.encode(FrameType.ZERO_RUN, 0, 0, 1, Long.MIN_VALUE, 0), Role.DESTINATION, LaneKind.BACKGROUND, "outside region 0");
        expect(v, h.encode(FrameType.ZERO_RUN, 0, 0, 1, 1, 8), Role.DESTINATION, LaneKind.BACKGROUND, "payload length 8");
        expect(v, h.encode(FrameType.ROUND_END, 0, 0, 1, 0, 0), Role.DESTINATION, LaneKind.URGENT, "belongs on the background lane");
        expect(v, h.encode(FrameType.ERROR, 0, 0, 0, 0, Wire.MAX_ERROR_BYTES + 1), Role.SOURCE, LaneKind.URGENT, "exceeds 4096");
        expect(v, h.encode(FrameType.CONTROL, 0, 0, 0, 0, -1), Role.SOURCE, LaneKind.URGENT, "4294967295 bytes exceeds");
        expect(v, h.encode(FrameType.HEARTBEAT, 0, 0, 0, 0, 0), Role.SOURCE, LaneKind.BACKGROUND, "urgent lane");
        expect(v, h.encode(FrameType.JOIN, 0, 0, 0, 0, 0), Role.DESTINATION, LaneKind.BACKGROUND, "handshake frame");
        expect(v, h.encode(0, 0, 0, 0, 0, 0), Role.DESTINATION, LaneKind.BACKGROUND, "unknown frame type 0");
        expect(v, h.encode(FrameType.ZERO_RUN, 0x8000, 0, 0, 1, 0), Role.DESTINATION, LaneKind.BACKGROUND, "unknown flags 0x8000");
    }

    @Test
    void urgentLaneFlagOnlyOnANegotiatedSharedChannel() {
        FrameHeader h = new FrameHeader(Arena.ofAuto());
        FrameValidator dedicated = new FrameValidator(REGIONS, 256 << 10, true);
        expect(dedicated, h.encode(FrameType.PAGE_REQUEST, FrameHeader.FLAG_URGENT_LANE, 0, 5, 1, 0), Role.SOURCE, LaneKind.URGENT,
                "negotiated no shared channel");
        FrameValidator shared = new FrameValidator(REGIONS, 256 << 10, true, true);
        shared.validate(h.encode(FrameType.PAGE_REQUEST, FrameHeader.FLAG_URGENT_LANE, 0, 5, 1, 0), Role.SOURCE, LaneKind.URGENT);
        shared.validate(h.encode(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST | FrameHeader.FLAG_URGENT_LANE, 0, 5, 1, 4096),
                Role.DESTINATION, LaneKind.URGENT);
        shared.validate(h.encode(FrameType.ROUND_END, 0, 0, 3, 0, 0), Role.DESTINATION, LaneKind.BACKGROUND);
        expect(shared, h.encode(FrameType.ZERO_RUN, FrameHeader.FLAG_URGENT_LANE, 0, 0, 1, 0), Role.DESTINATION, LaneKind.BACKGROUND,
                "URGENT_LANE flag on a frame taken for the background lane");
        expect(shared, h.encode(FrameType.ROUND_END, FrameHeader.FLAG_URGENT_LANE, 0, 3, 0, 0), Role.DESTINATION, LaneKind.URGENT,
                "belongs on the background lane");
        expect(shared, h.encode(FrameType.ZERO_RUN, 0x8000, 0, 0, 1, 0), Role.DESTINATION, LaneKind.BACKGROUND, "unknown flags 0x8000");
    }

    @Test
    void sharedChannelHelloOnlyWhereOffered() {
        Hello hello = new Hello(7, Hello.FLAG_DATA_DIGEST | Hello.FLAG_SHARED_CHANNEL, 2, 256 << 10, 500, 5000, REGIONS);
        MemorySegment b = Arena.ofAuto().allocate(hello.encodedLength());
        int n = hello.encode(b);
        assertTrue(Hello.decode(b, n, true).sharedChannel());
        WireException e = assertThrows(WireException.class, () -> Hello.decode(b, n));
        assertTrue(e.getMessage().contains("shared channel") && e.getMessage().contains("does not offer"), e.getMessage());
        assertEquals(false, new Hello(7, 0, 1, 256 << 10, 500, 5000, REGIONS).sharedChannel());
    }

    private static void expect(FrameValidator v, FrameHeader h, Role r, LaneKind l, String text) {
        TransportException e = assertThrows(WireException.class, () -> v.validate(h, r, l));
        assertEquals(TransportException.Kind.PROTOCOL, e.kind());
        assertTrue(e.getMessage().contains(text), "expected '" + text + "' in: " + e.getMessage());
    }

    @Test
    void preambleRejectsStrangers() {
        MemorySegment s = MemorySegment.ofArray("SSH-2.0-OpenSSH_9".getBytes());
        WireException e = assertThrows(WireException.class, () -> Wire.checkPreamble(s));
        assertTrue(e.getMessage().contains("'SSH-2.0-'"), e.getMessage());
        MemorySegment ok = Arena.ofAuto().allocate(16);
        Wire.writePreamble(ok, 7);
        assertEquals(7, Wire.checkPreamble(ok));
    }
}
