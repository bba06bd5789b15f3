package io.pagewire.transport.spi.wire;

import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.tck.Mutations;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzz targets of the decoders every transport runs on bytes from the wire: frame headers and their
 * validation against the negotiated layout, and HELLO payloads. Property-based (jqwik; Jazzer is not on
 * Maven Central here): a few hundred tries per property in CI ({@code jqwik.tries.default} from the
 * {@code jqwik.tries} Maven property), {@code -Djqwik.tries=100000} for a long run. The seed corpus is
 * what real sources send (HELLOs of real layouts, valid frames), mutated.
 *
 * <p>The invariants: bad input is refused with a {@link WireException} (never another exception, never
 * a hang), and what is accepted lies inside the layout: nothing from the wire can address a page
 * outside the destination RAM.
 */
class WireFuzzTest {
    private static final List<RegionDescriptor> LAYOUT = List.of(
            new RegionDescriptor("pc.ram", 64L << 20, 4096),
            new RegionDescriptor("hugepages", 8L << 20, 2L << 20),
            new RegionDescriptor("vga.vram", 16L << 20, 4096));
    private static final int MAX_PAYLOAD = 1 << 20;

    private static FrameHeader header(int type, int flags, int region, long first, long count, int payload) {
        return new FrameHeader(MemorySegment.ofArray(new byte[FrameHeader.LENGTH])).encode(type, flags, region, first, count, payload);
    }

    @Provide
    Arbitrary<FrameHeader> headers() {
        // Values near the bounds the validator checks, and anything at all.
        Arbitrary<Long> big = Arbitraries.oneOf(Arbitraries.longs(), Arbitraries.longs().between(-2, 20000),
                Arbitraries.of(Long.MAX_VALUE, Long.MIN_VALUE, (64L << 20) / 4096, (64L << 20) / 4096 - 1, 1L << 52));
        return Combinators.combine(Arbitraries.integers().between(0, FrameType.MAX + 2), Arbitraries.integers().between(0, 7),
                Arbitraries.integers().between(-1, 4), big, big,
                Arbitraries.oneOf(Arbitraries.integers(), Arbitraries.of(0, 4096, MAX_PAYLOAD, MAX_PAYLOAD + 1, 2 << 20)))
                .as(WireFuzzTest::header);
    }

    @Property
    void validatedFramesNeverAddressOutsideTheLayout(@ForAll("headers") FrameHeader h, @ForAll Role receiver, @ForAll LaneKind lane,
                                                      @ForAll boolean digest, @ForAll boolean shared) {
        FrameHeader decoded = new FrameHeader(MemorySegment.ofArray(h.segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))).decode();
        FrameValidator v = new FrameValidator(LAYOUT, MAX_PAYLOAD, digest, shared);
        try {
            v.validate(decoded, receiver, lane);
        } catch (WireException refused) {
            return;
        }
        int type = decoded.type();
        if (type == FrameType.PAGES || type == FrameType.ZERO_RUN || type == FrameType.SKIP_RUN) {
            assertTrue(decoded.region() >= 0 && decoded.region() < LAYOUT.size(), "accepted region " + decoded.region());
            RegionDescriptor d = LAYOUT.get(decoded.region());
            long pages = d.sizeBytes() / d.pageSize();
            assertTrue(decoded.first() >= 0 && decoded.count() >= 1 && decoded.first() + decoded.count() <= pages,
                    "accepted pages " + decoded.first() + "+" + decoded.count() + " of a region of " + pages);
        }
        if (type == FrameType.PAGES) {
            assertTrue(Integer.toUnsignedLong(decoded.payloadLength()) <= MAX_PAYLOAD, "accepted payload " + decoded.payloadLength());
        }
    }

    @Property
    void arbitraryHeaderBytesAreRefusedOrDecodeCleanly(@ForAll @Size(FrameHeader.LENGTH) byte[] bytes) {
        try {
            new FrameHeader(MemorySegment.ofArray(bytes)).decode();
        } catch (WireException refused) {
            // the header CRC (or a field) says no: what we want from noise
        }
    }

    @Property
    void aHeaderWithOneBitFlippedIsRefused(@ForAll("headers") FrameHeader h, @ForAll @IntRange(min = 0, max = 28 * 8 - 1) int bit) {
        byte[] b = h.segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        b[bit / 8] ^= (byte) (1 << (bit % 8));
        try {
            new FrameHeader(MemorySegment.ofArray(b)).decode();
            throw new AssertionError("a header with bit " + bit + " flipped passed its CRC32C");
        } catch (WireException expected) {
            assertTrue(expected.getMessage().contains("CRC"), expected.getMessage());
        }
    }

    /** The seed corpus: HELLOs as real sources encode them. */
    private static List<byte[]> seedHellos() {
        Hello one = new Hello(0x5eed, Hello.FLAG_DATA_DIGEST, 4, 1 << 20, 500, 5000, LAYOUT);
        Hello two = new Hello(-1L, Hello.FLAG_SHARED_CHANNEL | Hello.FLAG_AUTHENTICATED, 2, 64 << 10, 100, 3000,
                List.of(new RegionDescriptor("pc.ram", 1L << 30, 4096)));
        return List.of(encode(one), encode(two));
    }

    static byte[] encode(Hello h) {
        byte[] b = new byte[h.encodedLength()];
        h.encode(MemorySegment.ofArray(b));
        return b;
    }

    @Provide
    Arbitrary<byte[]> hellos() {
        return Arbitraries.oneOf(Mutations.of(seedHellos()), Arbitraries.bytes().array(byte[].class).ofMaxSize(200));
    }

    @Property
    void hellosFromTheWireDecodeOnlyWhenEveryFieldIsInBounds(@ForAll("hellos") byte[] payload, @ForAll boolean sharedOffered) {
        Hello h;
        try {
            h = Hello.decode(MemorySegment.ofArray(payload), payload.length, sharedOffered);
        } catch (WireException refused) {
            return;
        }
        // What decoded re-encodes to the same bytes and respects every bound.
        assertArrayEquals(payload, encode(h));
        assertTrue(h.channels() >= 1 && h.channels() <= Wire.MAX_CHANNELS);
        assertTrue(!h.regions().isEmpty() && Integer.toUnsignedLong(h.maxPagePayload()) <= Wire.MAX_FRAME_PAYLOAD);
        assertTrue(sharedOffered || !h.sharedChannel());
    }
}
