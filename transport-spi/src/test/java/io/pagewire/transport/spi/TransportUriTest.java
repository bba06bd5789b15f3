package io.pagewire.transport.spi;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TransportUriTest {

    @Test
    void hierarchicalWithOptions() {
        TransportUri u = TransportUri.parse("tcp://dst.example:4444?channels=4&data-digest=false");
        assertEquals("tcp", u.scheme());
        assertEquals("dst.example", u.host());
        assertEquals(4444, u.port());
        assertNull(u.media());
        assertEquals(Map.of("channels", "4", "data-digest", "false"), u.options());
        assertEquals(4, u.intOption("channels", 1, 1, 64));
        assertEquals(false, u.booleanOption("data-digest", true));
        assertEquals(7, u.intOption("absent", 7, 1, 64));
        assertEquals(-1, TransportUri.parse("tcp://h:1?urgent-dscp=-1").intOption("urgent-dscp", 46, -1, 63));
        assertThrows(TransportException.class, () -> TransportUri.parse("tcp://h:1?urgent-dscp=-2").intOption("urgent-dscp", 46, -1, 63));
        assertThrows(TransportException.class, () -> TransportUri.parse("tcp://h:1?urgent-dscp=--1").intOption("urgent-dscp", 46, -1, 63));
    }

    @Test
    void ipv6Literal() {
        TransportUri u = TransportUri.parse("rdma://[fe80::1%eth0]:4444?pin-all=true");
        assertEquals("fe80::1%eth0", u.host());
        assertEquals(4444, u.port());
        assertEquals("rdma://[::1]:5555", TransportUri.parse("rdma://[::1]:0").withPort(5555).text());
    }

    @Test
    void aeronStyleOpaqueUri() {
        TransportUri u = TransportUri.parse("aeron:udp?endpoint=10.0.0.2:40123|mtu=8k|term-length=16m");
        assertEquals("aeron", u.scheme());
        assertEquals("udp", u.media());
        assertNull(u.host());
        assertEquals("10.0.0.2:40123", u.options().get("endpoint"));
        assertEquals(8192, u.intOption("mtu", 1408, 1024, 65504));
        assertEquals(16 << 20, u.intOption("term-length", 0, 0, 1 << 30));
        assertEquals("ipc", TransportUri.parse("aeron:ipc").media());
    }

    @Test
    void pathUri() {
        TransportUri u = TransportUri.parse("unix:///run/pagewire/m.sock?share-memory=true&channels=2");
        assertEquals("unix", u.scheme());
        assertEquals("/run/pagewire/m.sock", u.path());
        assertEquals("/run/pagewire/m.sock", u.requirePath());
        assertNull(u.host());
        assertEquals("true", u.options().get("share-memory"));
        TransportException e = assertThrows(TransportException.class, () -> u.requireHost());
        assertTrue(e.getMessage().contains("unix://host:port"), e.getMessage());
        e = assertThrows(TransportException.class, () -> TransportUri.parse("tcp://h:1").requirePath());
        assertTrue(e.getMessage().contains("three slashes"), e.getMessage());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "unix:///                         | not an absolute file path",
            "unix:///tmp/dir/                 | not an absolute file path",
            "''                               | empty URI",
            "tcp://h:4444x                    | port '4444x'",
            "//host:1                         | no scheme",
            "TCP://h:1                        | must be lower-case",
            "tcp://:4444                      | no host",
            "tcp://h:99999                    | out of range",
            "tcp://h:12ab                     | not a number",
            "tcp://::1:4444                   | in brackets",
            "tcp://[::1:4444                  | no closing ']'",
            "tcp://[1.2.3.4]:1                | not an IPv6 literal",
            "tcp://h:1/path                   | path",
            "tcp://h:1?channels               | name=value",
            "tcp://h:1?channels=1&channels=2  | given twice",
            "tcp://h:1?a=1&&b=2               | empty option",
            "aeron:                           | nothing after",
            "aeron:u/dp                       | media"})
    void malformedUrisNameTheProblem(String uri, String expected) {
        TransportException e = assertThrows(TransportException.class, () -> TransportUri.parse(uri));
        assertEquals(TransportException.Kind.INVALID_URI, e.kind());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertTrue(e.getMessage().contains(uri), "the message quotes the URI: " + e.getMessage());
    }

    @Test
    void badOptionValuesNameOptionValueAndRange() {
        TransportUri u = TransportUri.parse("tcp://h:1?channels=lots&data-digest=yes&batch-bytes=4g");
        TransportException e = assertThrows(TransportException.class, () -> u.intOption("channels", 1, 1, 64));
        assertTrue(e.getMessage().contains("channels=lots") && e.getMessage().contains("1..64"), e.getMessage());
        e = assertThrows(TransportException.class, () -> u.booleanOption("data-digest", true));
        assertTrue(e.getMessage().contains("data-digest=yes") && e.getMessage().contains("true or false"), e.getMessage());
        e = assertThrows(TransportException.class, () -> u.longOption("batch-bytes", 1, 4096, 16 << 20));
        assertTrue(e.getMessage().contains("batch-bytes=4g"), e.getMessage());
    }

    @Test
    void requirePortExplainsWhatToWrite() {
        TransportException e = assertThrows(TransportException.class, () -> TransportUri.parse("tcp://dst").requirePort());
        assertTrue(e.getMessage().contains("tcp://dst:PORT"), e.getMessage());
        e = assertThrows(TransportException.class, () -> TransportUri.parse("aeron:udp").requireHost());
        assertTrue(e.getMessage().contains("aeron://host:port"), e.getMessage());
    }
}
