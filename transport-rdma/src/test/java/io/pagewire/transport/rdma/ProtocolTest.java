package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.wire.WireException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

import static io.pagewire.transport.spi.wire.Wire.U32;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A hostile destination's RDMA_REGIONS and a hostile source's RDMA_SETUP are checked field by field. */
class ProtocolTest {
    private static final List<RegionDescriptor> LAYOUT = List.of(new RegionDescriptor("pc.ram", 3L << 30, 4096),
            new RegionDescriptor("vga", 1 << 20, 4096), new RegionDescriptor("rom", 1 << 20, 4096));

    private static Protocol.Regions good() {
        return new Protocol.Regions(32, 1 << 20, 256, 8, 256 << 10, 0x1000, 7, 0x2000, 8, List.of(
                new Protocol.RegionKeys(Protocol.MODE_PINNED, 0x7f0000000000L, new int[]{1, 2, 3}),
                new Protocol.RegionKeys(Protocol.MODE_ON_DEMAND, 0x7f1000000000L, new int[0]),
                new Protocol.RegionKeys(Protocol.MODE_STAGED, 0, new int[0])));
    }

    private static MemorySegment encode(Protocol.Regions r) {
        MemorySegment b = Arena.ofAuto().allocate(r.encodedLength());
        r.encode(b, 0);
        return b;
    }

    @Test
    void connectRequestsNameTheirSessionAndNothingElseDoes() {
        Protocol.ConnectRequest urgent = new Protocol.ConnectRequest(true, 0x8000_0000_0000_0001L);
        assertEquals(urgent, Protocol.ConnectRequest.decode(urgent.encode()));
        byte[] padded = java.util.Arrays.copyOf(Protocol.joinRequest(-2L), Verbs.MAX_CONNECT_PRIVATE_DATA); // the CM's zero padding
        assertEquals(new Protocol.ConnectRequest(false, -2L), Protocol.ConnectRequest.decode(padded));
        assertEquals(null, Protocol.ConnectRequest.decode(new byte[0]));
        assertEquals(null, Protocol.ConnectRequest.decode(java.util.Arrays.copyOf(urgent.encode(), Protocol.CONNECT_REQUEST_LENGTH - 1)));
        byte[] other = urgent.encode();
        other[3] ^= 1;
        assertEquals(null, Protocol.ConnectRequest.decode(other), "another magic names no session");
    }

    @Test
    void regionsRoundTrip() {
        Protocol.Regions r = good();
        MemorySegment b = encode(r);
        Protocol.Regions back = Protocol.Regions.decode(b, 0, b.byteSize(), LAYOUT, 256 << 10);
        assertEquals(r.chunkBytes(), back.chunkBytes());
        assertArrayEquals(new int[]{1, 2, 3}, back.regions().get(0).rkeys());
        assertEquals(Protocol.MODE_STAGED, back.regions().get(2).mode());
    }

    private static void assertBad(MemorySegment b, long length, String keyword) {
        WireException e = assertThrows(WireException.class, () -> Protocol.Regions.decode(b, 0, length, LAYOUT, 256 << 10));
        assertTrue(e.getMessage().contains(keyword), "'" + keyword + "' not in: " + e.getMessage());
    }

    @Test
    void hostileRegionsAreRefused() {
        MemorySegment b = encode(good());
        long n = b.byteSize();
        assertBad(b, n - 1, "truncated");
        assertBad(b, 20, "shorter than its fixed part");
        MemorySegment extra = Arena.ofAuto().allocate(n + 4);
        MemorySegment.copy(b, 0, extra, 0, n);
        assertBad(extra, n + 4, "unexpected bytes");
        b.set(U32, Protocol.Regions.FIXED + 4, 2); // pinned region 0 with 2 keys for 3 GiB
        assertBad(b, n, "needs 3");
        b = encode(good());
        b.set(U32, Protocol.Regions.FIXED, 9);
        assertBad(b, n, "unknown mode");
        b = encode(good());
        b.set(U32, 8, 3 << 20);
        assertBad(b, n, "chunk size");
        b = encode(good());
        b.set(U32, 12, 1);
        assertBad(b, n, "registration cache");
        b = encode(good());
        b.set(U32, 56, 4);
        assertBad(b, n, "4 regions");
        b = encode(good());
        b.set(U32, 0, 100_000);
        assertBad(b, n, "receive depth");
        b = encode(good());
        b.set(U32, 20, 4096);
        assertBad(b, n, "staging slots");
    }

    @Test
    void hostileSetupIsRefused() {
        MemorySegment b = Arena.ofAuto().allocate(Protocol.Setup.LENGTH);
        new Protocol.Setup(16).encode(b, 0);
        assertEquals(16, Protocol.Setup.decode(b, 0, Protocol.Setup.LENGTH).rxDepth());
        assertThrows(WireException.class, () -> Protocol.Setup.decode(b, 0, 8));
        b.set(U32, 0, 1);
        assertThrows(WireException.class, () -> Protocol.Setup.decode(b, 0, Protocol.Setup.LENGTH));
        b.set(U32, 0, 16);
        b.set(U32, 4, 4096);
        WireException e = assertThrows(WireException.class, () -> Protocol.Setup.decode(b, 0, Protocol.Setup.LENGTH));
        assertTrue(e.getMessage().contains("incompatible"), e.getMessage());
    }
}
