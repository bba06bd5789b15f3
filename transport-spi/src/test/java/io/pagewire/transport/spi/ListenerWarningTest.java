package io.pagewire.transport.spi;

import io.pagewire.transport.spi.kit.Authentication;
import io.pagewire.transport.spi.tck.TckCredentials;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The warning a listener without authentication gives when sources from beyond this machine can reach it; URI credentials. */
class ListenerWarningTest {
    private static String risk(String uri) {
        TransportUri u = TransportUri.parse(uri);
        TransportContext c = new TransportContext();
        c.authentication(Authentication.fromUri(u, Role.DESTINATION));
        return Transports.unauthenticatedRisk(u, c);
    }

    @Test
    void nonLoopbackWithoutAuthenticationNamesTheRisk() {
        String w = risk("tcp://0.0.0.0:4444?channels=2");
        assertTrue(w != null && w.contains("WITHOUT AUTHENTICATION") && w.contains("write any content into this RAM")
                && w.contains("psk-file"), String.valueOf(w));
        assertTrue(risk("aeron:udp?endpoint=0.0.0.0:40123").contains("0.0.0.0"));
        assertTrue(risk("rdma://10.1.2.3:4444").contains("10.1.2.3"));
    }

    @Test
    void loopbackUnixAndAuthenticatedListenersAreQuiet() throws Exception {
        assertNull(risk("tcp://127.0.0.1:4444"));
        assertNull(risk("tcp://[::1]:4444"));
        assertNull(risk("tcp://localhost:4444"));
        assertNull(risk("aeron:udp?endpoint=127.0.0.1:40123"));
        assertNull(risk("aeron:ipc"));
        assertNull(risk("unix:///tmp/x.sock"));
        assertNull(risk("tcp://0.0.0.0:4444?psk-file=" + TckCredentials.get().psk));
    }

    @Test
    void credentialOptionsAreCheckedTogether() throws Exception {
        TckCredentials c = TckCredentials.get();
        TransportException e = assertThrows(TransportException.class, () -> risk("tcp://h:1?psk-file=" + c.psk + "&tls-creds=" + c.certs));
        assertEquals(TransportException.Kind.INVALID_URI, e.kind());
        assertTrue(e.getMessage().contains("exactly one"), e.getMessage());
        e = assertThrows(TransportException.class, () -> risk("tcp://h:1?tls-authz=a"));
        assertTrue(e.getMessage().contains("tls-authz= alone"), e.getMessage());
        e = assertThrows(TransportException.class, () -> risk("tcp://h:1?cert=" + c.certs.resolve("server-cert.pem")));
        assertTrue(e.getMessage().contains("key= is missing"), e.getMessage());
        e = assertThrows(TransportException.class, () -> risk("tcp://h:1?psk-file=" + c.psk + "&tls-authz=a"));
        assertTrue(e.getMessage().contains("tls-authz= needs certificates"), e.getMessage());
        e = assertThrows(TransportException.class, () -> risk("tcp://h:1?psk-file=/nonexistent/key"));
        assertEquals(TransportException.Kind.INVALID_CONFIG, e.kind());
        assertTrue(e.getMessage().contains("/nonexistent/key"), e.getMessage());

    }
}
