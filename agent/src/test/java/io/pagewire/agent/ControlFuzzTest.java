package io.pagewire.agent;

import io.pagewire.transport.spi.tck.Mutations;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzz targets of the agent's CONTROL messages a peer sends (jqwik, like the transport SPI's WireFuzzTest):
 * received-bitmap / verify-final messages, verify-progress and the postcopy-stats JSON. Seeds are messages
 * our own encoders produce, mutated. Bad input is an {@link IllegalArgumentException}, nothing else, and
 * what is accepted lies inside the layout.
 */
class ControlFuzzTest {
    private static final long[] PAGES = {262_144, 4_096, 100};

    private static List<byte[]> seedBitmaps() {
        List<byte[]> out = new ArrayList<>();
        for (int region = 0; region < PAGES.length; region++) {
            long words = (PAGES[region] + 63) / 64;
            Protocol.encodeBitmap(Protocol.VERIFY_FINAL, region, words, w -> w * 0x9E3779B97F4A7C15L,
                    m -> out.add(m.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)));
        }
        return out.size() > 8 ? out.subList(0, 8) : out;
    }

    @Provide
    Arbitrary<byte[]> bitmaps() {
        return Arbitraries.oneOf(Mutations.of(seedBitmaps()), Arbitraries.bytes().array(byte[].class).ofMaxSize(200),
                Arbitraries.strings().ofMaxLength(60).map(s -> (Protocol.VERIFY_FINAL + " " + s + "\n").getBytes(StandardCharsets.UTF_8)));
    }

    @Property
    void bitmapMessagesDecodeOnlyInsideTheLayout(@ForAll("bitmaps") byte[] message) {
        Protocol.BitmapChunk c;
        try {
            c = Protocol.decodeBitmap(MemorySegment.ofArray(message), Protocol.VERIFY_FINAL, PAGES.length, r -> PAGES[r]);
        } catch (IllegalArgumentException refused) {
            return;
        }
        long regionWords = (PAGES[c.regionId()] + 63) / 64;
        assertTrue(c.regionId() >= 0 && c.regionId() < PAGES.length && c.firstWord() >= 0 && c.words() >= 0
                && c.firstWord() + c.words() <= regionWords, "accepted " + c);
    }

    @Property
    void progressMessagesAreInBoundsOrRefused(@ForAll("progress") String args) {
        try {
            long done = Protocol.progressDone(args);
            assertTrue(done >= 0, "accepted " + done);
        } catch (IllegalArgumentException refused) {
            assertFalse(refused.getMessage().chars().anyMatch(ch -> ch < 0x20), "unescaped peer text in: " + refused.getMessage());
        }
    }

    @Provide
    Arbitrary<String> progress() {
        return Arbitraries.oneOf(Arbitraries.strings().ofMaxLength(40),
                Arbitraries.longs().list().ofMinSize(1).ofMaxSize(3).map(l -> String.join(" ", l.stream().map(String::valueOf).toList())));
    }

    @Property
    void postcopyStatsFromAPeerParseToAnObjectOrAreRefused(@ForAll("stats") String text) {
        try {
            String written = Json.write(Json.parseObject(text, 64 * 1024, "postcopy-stats"));
            assertFalse(written.chars().anyMatch(ch -> ch < 0x20), written);
            assertTrue(written.startsWith("{") && written.endsWith("}"), written);
        } catch (IllegalArgumentException refused) {
            // not one JSON object: left out of the statistics
        }
    }

    @Provide
    Arbitrary<String> stats() {
        String real = "{\"postcopy-requests\":12,\"blocktime-ms\":1.25,\"vcpu-blocktime-ms\":[0.5,0.75],"
                + "\"fault-latency-us\":{\"count\":3,\"p50\":40.0}}";
        return Arbitraries.oneOf(Mutations.of(List.of(real.getBytes(StandardCharsets.UTF_8)))
                        .map(b -> new String(b, StandardCharsets.UTF_8)),
                Arbitraries.strings().ofMaxLength(80));
    }
}
