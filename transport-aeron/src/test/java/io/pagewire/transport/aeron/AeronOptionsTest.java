package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** URI parsing and validation: every bad value is refused before anything is opened, naming the value and the rule. */
class AeronOptionsTest {

    private static AeronOptions parse(String uri, boolean listening) {
        return AeronOptions.parse(TransportUri.parse(uri), listening);
    }

    @Test
    void udpDefaultsAndChannels() {
        AeronOptions o = parse("aeron:udp?endpoint=10.0.0.1:40123", false);
        assertFalse(o.ipc());
        assertEquals("10.0.0.1", o.host());
        assertEquals(40123, o.port());
        assertNull(o.aeronDir());
        assertTrue(o.dataDigest());
        assertEquals(AeronOptions.DEFAULT_MTU, o.mtu());
        assertEquals(AeronOptions.DEFAULT_STREAM_ID, o.streamId());
        String pub = o.backgroundChannel("10.0.0.1", 5000, true);
        assertTrue(pub.startsWith("aeron:udp?endpoint=10.0.0.1:5000|mtu=65504|term-length=16777216"), pub);
        assertTrue(pub.contains("pub-wnd=4194304") && pub.contains("so-sndbuf=2097152") && !pub.contains("rcv-wnd"), pub);
        String sub = o.backgroundChannel("0.0.0.0", 0, false);
        assertTrue(sub.contains("rcv-wnd=2097152") && sub.contains("so-rcvbuf=4194304") && !sub.contains("pub-wnd"), sub);
    }

    @Test
    void aeronParametersPassThroughAndIpv6() {
        AeronOptions o = parse("aeron:udp?endpoint=[::1]:40123|mtu=16k|term-length=4m|pub-wnd=1m|so-sndbuf=1m|interface=127.0.0.1"
                + "|nak-delay=100us|max-resend=8|sparse=true", false);
        assertEquals("::1", o.host());
        assertEquals(16384, o.mtu());
        String pub = o.backgroundChannel(o.host(), 40123, true);
        assertTrue(pub.startsWith("aeron:udp?endpoint=[::1]:40123|mtu=16384|term-length=4194304|sparse=true|pub-wnd=1048576"), pub);
        assertTrue(pub.contains("interface=127.0.0.1") && pub.contains("nak-delay=100us") && pub.contains("max-resend=8"), pub);
        assertFalse(o.backgroundChannel(o.host(), 0, false).contains("interface"), "interface picks the sending side's address");
    }

    @Test
    void ipc() {
        AeronOptions o = parse("aeron:ipc?aeron.dir=/tmp/some-driver|stream-id=77|data-digest=false", false);
        assertTrue(o.ipc());
        assertEquals("/tmp/some-driver", o.aeronDir());
        assertEquals(77, o.streamId());
        assertFalse(o.dataDigest());
        assertTrue(o.backgroundChannel(null, 0, true).startsWith("aeron:ipc?mtu="));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = ';', value = {
            "aeron://host:4000; aeron:udp?endpoint=host:4000",
            "aeron:tcp?endpoint=h:1; unknown Aeron media 'tcp'",
            "aeron:udp; aeron:udp needs an endpoint",
            "aeron:udp?endpoint=host; endpoint=host",
            "aeron:udp?endpoint=::1:4000; IPv6 address in brackets",
            "aeron:udp?endpoint=h:70000; port in 0..65535",
            "aeron:udp?endpoint=h:0; cannot connect to port 0",
            "aeron:udp?endpoint=h:1|mtu=1000; multiple of 32",
            "aeron:udp?endpoint=h:1|mtu=70000; 128..65504",
            "aeron:udp?endpoint=h:1|term-length=3m; power of two",
            "aeron:udp?endpoint=h:1|term-length=256k; at least 8 x mtu",
            "aeron:udp?endpoint=h:1|pub-wnd=64m; pub-wnd=64m",
            "aeron:udp?endpoint=h:1|data-digest=yes; true or false",
            "aeron:udp?endpoint=h:1|batch-bytes=12k; power of two",
            "aeron:udp?endpoint=h:1|urgent-driver=maybe; separate or shared",
            "aeron:udp?endpoint=h:1|nak-delay=soon; duration",
            "aeron:udp?endpoint=h:1|background-nice=25; 0..19",
            "aeron:udp?endpoint=h:1|stream-id=0; the listener's stream id",
            "aeron:udp?endpoint=h:1|stream-id=-5; stream-id=-5",
            "aeron:ipc?so-sndbuf=1m; applies to aeron:udp only",
            "aeron:ipc?endpoint=h:1; applies to aeron:udp only",
    })
    void badValuesAreRefusedNamingThem(String uri, String expected) {
        TransportException e = assertThrows(TransportException.class, () -> parse(uri, false));
        assertEquals(TransportException.Kind.INVALID_URI, e.kind());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    @Test
    void listenerMayUsePortAndStreamZero() {
        AeronOptions o = parse("aeron:udp?endpoint=0.0.0.0:0|stream-id=0", true);
        assertEquals(0, o.port());
        assertEquals(0, o.streamId());
    }

    @Test
    void unknownOptionsAndAeronParametersThatWouldBreakTheTransportAreRefused() {
        try (TckRam ram = TckRam.of(1 << 20)) {
            for (String bad : new String[]{"reliable=false", "session-id=5", "mtus=8k", "control-mode=dynamic"}) {
                TransportException e = assertThrows(TransportException.class,
                        () -> Transports.connect("aeron:udp?endpoint=127.0.0.1:1|" + bad, new TransportContext().layout(ram.layout())));
                assertEquals(TransportException.Kind.INVALID_URI, e.kind());
                assertTrue(e.getMessage().contains("known options") && e.getMessage().contains("term-length"), e.getMessage());
            }
        }
    }

    @Test
    void providerIsFoundByScheme() {
        assertTrue(Transports.providers().get("aeron") instanceof AeronTransportProvider);
    }
}
