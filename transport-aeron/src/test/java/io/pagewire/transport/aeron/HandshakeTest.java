package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.tck.TransportTck;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.Wire;
import io.pagewire.transport.spi.wire.WireException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The Aeron handshake messages: round trips, and clear refusals of malformed ones. */
class HandshakeTest {
    private static final List<RegionDescriptor> REGIONS = List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096),
            new RegionDescriptor("vga.vram", 1 << 16, 4096));

    @Test
    void connectRoundTrip() {
        Hello hello = new Hello(42, Hello.FLAG_DATA_DIGEST, 1, 65536, 500, 5000, REGIONS);
        MemorySegment m = MemorySegment.ofArray(Handshake.connect(40123, -7, hello));
        Handshake.Envelope e = Handshake.envelope(m, false);
        assertEquals(40123, e.replyPort());
        assertEquals(-7, e.replyStream());
        Hello back = Handshake.hello(m.asSlice(Handshake.ENVELOPE_LENGTH));
        assertEquals(hello, back);
        assertNull(Handshake.envelope(m, true), "a UDP reply port is not a valid IPC envelope");
        assertNull(Handshake.envelope(MemorySegment.ofArray("GET / HTTP/1.1\r\n\r\n".getBytes()), false));
    }

    @Test
    void ackAndErrorRoundTrip() {
        Handshake.Ack ack = new Handshake.Ack(99, 500, 1000, 11, 2000, 22);
        Handshake.Answer a = Handshake.answer(MemorySegment.ofArray(Handshake.ack(ack)), false);
        assertEquals(ack, a.ack());
        assertNull(a.error());
        a = Handshake.answer(MemorySegment.ofArray(Handshake.error("RAM layout mismatch: x")), false);
        assertEquals("RAM layout mismatch: x", a.error());
        assertThrows(WireException.class, () -> Handshake.answer(MemorySegment.ofArray(Handshake.ack(ack)), true),
                "ports over IPC must be 0");
        assertEquals("RAM layout mismatch: x", TransportTck.errorText(Handshake.error("RAM layout mismatch: x")));
    }

    @Test
    void longErrorTextIsCutOnACharacterBoundary() {
        String reason = "é".repeat(3000); // 6000 bytes of UTF-8
        byte[] cut = Handshake.errorText(reason);
        assertTrue(cut.length <= Wire.MAX_ERROR_BYTES && cut.length % 2 == 0, "cut at " + cut.length);
    }

    @Test
    void joinIsChecked() {
        MemorySegment j = MemorySegment.ofArray(Handshake.join(5, 0, null));
        assertNull(Handshake.checkJoin(j, 5, 0, null));
        assertTrue(Handshake.checkJoin(j, 6, 0, null).contains("expected JOIN(session 6"), Handshake.checkJoin(j, 6, 0, null));
        assertTrue(Handshake.checkJoin(j, 5, Handshake.URGENT_STREAM_INDEX, null).contains("stream -1"));
        byte[] bad = Handshake.join(5, 0, null);
        bad[Wire.PREAMBLE_LENGTH + 12] ^= 1;
        assertTrue(Handshake.checkJoin(MemorySegment.ofArray(bad), 5, 0, null).contains("CRC32C"));
        assertTrue(Handshake.checkJoin(MemorySegment.ofArray(Arrays.copyOf(bad, 20)), 5, 0, null).contains("20 bytes"));
    }

    @Test
    void malformedHellosNameTheProblem() {
        byte[] good = TransportTck.helloBytes(REGIONS, Wire.VERSION, true, 65536, 1);
        assertEquals(1, Handshake.hello(MemorySegment.ofArray(good)).sessionId());
        assertTrue(msg(Arrays.copyOf(good, 10)).contains("fewer than the 16-byte preamble"));
        assertTrue(msg(Arrays.copyOf(good, 30)).contains("inside the HELLO frame header"));
        assertTrue(msg(Arrays.copyOf(good, good.length - 3)).contains("truncated"));
        assertTrue(msg(Arrays.copyOf(good, good.length + 3)).contains("3 unexpected bytes"));
        assertTrue(msg(TransportTck.helloBytes(REGIONS, 7, true, 65536, 1)).contains("version 7"));
        byte[] join = Handshake.join(1, 0, null);
        assertTrue(msg(join).contains("expected HELLO"));
        byte[] garbage = Arrays.copyOf("not pagewire at all".getBytes(), 64);
        assertTrue(msg(garbage).contains("not a pagewire peer"));
        assertArrayEquals(good, TransportTck.helloBytes(REGIONS, Wire.VERSION, true, 65536, 1), "helloBytes is deterministic");
    }

    private static String msg(byte[] m) {
        return assertThrows(WireException.class, () -> Handshake.hello(MemorySegment.ofArray(m))).getMessage();
    }
}
