package io.pagewire.transport.spi;

import org.junit.jupiter.api.Test;

import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TransportsTest {

    /** A provider that only declares itself; lookup never calls connect or listen. */
    private record Declared(String scheme, Map<String, String> options, String cause) implements TransportProvider {
        @Override
        public Set<Capability> capabilities() {
            return Set.of();
        }

        @Override
        public String unavailabilityCause() {
            return cause;
        }

        @Override
        public Connection connect(TransportUri uri, TransportContext context) {
            throw new UnsupportedOperationException();
        }

        @Override
        public Listener listen(TransportUri uri, TransportContext context) {
            throw new UnsupportedOperationException();
        }
    }

    private final Map<String, TransportProvider> providers = new TreeMap<>(Map.of(
            "tcp", new Declared("tcp", Map.of("channels", "", "data-digest", ""), null),
            "rdma", new Declared("rdma", Map.of("pin-all", ""), "no RDMA device: install rdma-core")));

    @Test
    void findsTheProviderByScheme() {
        assertSame(providers.get("tcp"), Transports.provider(TransportUri.parse("tcp://h:1?channels=2"), providers));
    }

    @Test
    void unknownSchemeListsTheKnownOnes() {
        TransportException e = assertThrows(TransportException.class,
                () -> Transports.provider(TransportUri.parse("udt://h:1"), providers));
        assertEquals(TransportException.Kind.INVALID_URI, e.kind());
        assertTrue(e.getMessage().contains("'udt'") && e.getMessage().contains("rdma, tcp"), e.getMessage());
    }

    @Test
    void authenticationOptionsAreAcceptedByEveryProviderAndSuggested() {
        assertSame(providers.get("tcp"), Transports.provider(TransportUri.parse("tcp://h:1?psk-file=/k&channels=2"), providers));
        TransportException e = assertThrows(TransportException.class,
                () -> Transports.provider(TransportUri.parse("tcp://h:1?psk-fil=/k"), providers));
        assertTrue(e.getMessage().contains("did you mean 'psk-file'") && e.getMessage().contains("tls-authz"), e.getMessage());
    }

    @Test
    void unknownOptionListsTheKnownOnesAndSuggests() {
        TransportException e = assertThrows(TransportException.class,
                () -> Transports.provider(TransportUri.parse("tcp://h:1?chanels=2"), providers));
        assertTrue(e.getMessage().contains("'chanels'") && e.getMessage().contains("did you mean 'channels'")
                && e.getMessage().contains("channels, data-digest"), e.getMessage());
    }

    @Test
    void unavailableTransportSaysWhy() {
        TransportException e = assertThrows(TransportException.class,
                () -> Transports.provider(TransportUri.parse("rdma://h:1"), providers));
        assertEquals(TransportException.Kind.UNAVAILABLE, e.kind());
        assertTrue(e.getMessage().contains("install rdma-core"), e.getMessage());
    }

    @Test
    void contextConcludeNamesTheBadValue() {
        TransportException e = assertThrows(TransportException.class, () -> new TransportContext().conclude());
        assertTrue(e.getMessage().contains("layout"), e.getMessage());
        RamLayout layout = RamLayout.of(RamRegion.of("r", java.lang.foreign.Arena.ofAuto().allocate(4096), 4096));
        e = assertThrows(TransportException.class,
                () -> new TransportContext().layout(layout).heartbeatIntervalNs(1_000_000_000L).peerTimeoutNs(1_500_000_000L).conclude());
        assertTrue(e.getMessage().contains("peerTimeoutNs=1500000000"), e.getMessage());
    }

    @Test
    void layoutMismatchNamesTheFirstDifference() {
        var a = java.util.List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096), new RegionDescriptor("vga", 8192, 4096));
        assertEquals(null, RamLayout.mismatch(a, a));
        String m = RamLayout.mismatch(a, java.util.List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096), new RegionDescriptor("vga", 8192, 8192)));
        assertTrue(m.contains("'vga'") && m.contains("8192-byte pages at the source"), m);
        m = RamLayout.mismatch(a, a.subList(0, 1));
        assertTrue(m.contains("2 RAM region(s)") && m.contains("sends 1"), m);
    }

    /** Found by the hostile source (conformance/hostile_source.py): a HELLO's region name went into the refusal raw. */
    @Test
    void aPeersRegionNameIsEscapedInEveryMessage() {
        var a = java.util.List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096));
        String m = RamLayout.mismatch(a, java.util.List.of(new RegionDescriptor("\u0000c.ram\u001b[2J\n", 1 << 20, 4096)));
        assertTrue(m.contains("'\\u0000c.ram\\u001b[2J\\u000a' at the source"), m);
        m = RamLayout.mismatch(a, java.util.List.of(new RegionDescriptor("pc.ram", 1 << 20, 4096), new RegionDescriptor("x\ry", 4096, 4096)));
        assertTrue(m.contains("x\\u000dy") && !m.contains("\r"), m);
        TransportException e = assertThrows(TransportException.class, () -> new RegionDescriptor("\u001b]0;x\u0007", 4096, 3000));
        assertTrue(e.getMessage().contains("'\\u001b]0;x\\u0007'") && !e.getMessage().contains("\u001b"), e.getMessage());
    }

    @Test
    void regionDescriptorRejectsBadGeometry() {
        assertThrows(TransportException.class, () -> new RegionDescriptor("", 4096, 4096));
        assertThrows(TransportException.class, () -> new RegionDescriptor("r", 4096, 3000));
        assertThrows(TransportException.class, () -> new RegionDescriptor("r", 6000, 4096));
        assertThrows(TransportException.class, () -> new RegionDescriptor("r", 0, 4096));
        assertEquals(1L << 40, new RegionDescriptor("huge", 1L << 52, 4096).pageCount(), "long page counts: 4 PiB of 4 KiB pages");
    }
}
