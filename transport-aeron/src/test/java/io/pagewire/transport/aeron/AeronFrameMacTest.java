package io.pagewire.transport.aeron;

import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.Transports;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.tck.TckCredentials;
import io.pagewire.transport.spi.tck.TckRam;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code frame-mac=on}: a frame changed on the way (one payload byte flipped after the source made its
 * MAC, as an attacker spoofing a datagram into the stream would) fails the destination's connection with
 * a clear error and no completion, while without the MAC and digest the same change lands unnoticed (the
 * control); replayed or misdirected frames fail; the combinations that cannot work are refused.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class AeronFrameMacTest {
    private static final long MIB = 1 << 20;
    private final Pairs pairs = new Pairs();

    @AfterEach
    void closeEverything() throws Exception {
        pairs.close();
    }

    @ParameterizedTest(name = "frame-mac={0}")
    @ValueSource(strings = {"on", "off"})
    void aChangedFrameFailsTheConnectionOnlyWithTheMac(String frameMac) throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = pairs.later(TckRam.of(MIB));
        TckRam dst = pairs.later(TckRam.of(MIB));
        src.fillPattern(9, 0, 1);
        Pairs.Recorder s = new Pairs.Recorder();
        Pairs.Acking d = new Pairs.Acking();
        Pairs.Pair p = pairs.open("aeron:udp?endpoint=127.0.0.1:0&data-digest=false&psk-file=" + c.psk + "&frame-mac=" + frameMac,
                src.layout(), dst.layout(), s, d);
        d.connection = p.destination();
        ((AeronConnection) p.source()).tamperWithNextFrame(false);
        p.source().background().sendPages(0, 0, src.pages(0));
        p.source().background().sendRoundEnd(1);
        p.source().background().sendComplete();
        if (frameMac.equals("on")) {
            TransportException e = d.awaitError(Duration.ofSeconds(30));
            assertTrue(e.getMessage().contains("frame MAC mismatch") && e.getMessage().contains("PAGES"), e.toString());
            assertFalse(d.completed.await(200, TimeUnit.MILLISECONDS), "a destination whose stream failed its MAC must not complete");
        } else {
            // The control: the same change, with neither MAC nor digest, is placed as if it were the source's page.
            assertTrue(d.completed.await(30, TimeUnit.SECONDS), "destination onComplete");
            d.assertNoError();
            assertNotEquals(src.crc(0), dst.crc(0), "the flipped byte should have landed in the destination's RAM");
        }
    }

    @Test
    void replayedAndMisdirectedFramesFailTheirMac() {
        AuthExchange.Result session = new AuthExchange.Result(new byte[32], "test");
        FrameMac sender = new FrameMac(session, "source", "background");
        FrameMac receiver = new FrameMac(session, "source", "background");
        FrameMac otherStream = new FrameMac(session, "source", "urgent");
        byte[] frame = "a frame header and its payload".getBytes();
        MemorySegment mac = MemorySegment.ofArray(new byte[FrameMac.LENGTH]);
        sender.begin();
        sender.update(frame, 0, frame.length);
        sender.finish(mac, 0);
        sender.sent();
        byte[] macBytes = mac.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        otherStream.begin();
        otherStream.update(frame, 0, frame.length);
        assertFalse(otherStream.verify(macBytes, 0), "a frame of the background stream must not pass on the urgent stream");
        receiver.begin();
        receiver.update(frame, 0, frame.length);
        assertTrue(receiver.verify(macBytes, 0), "the frame as sent");
        receiver.begin(); // the same frame again: frame number 1 now
        receiver.update(frame, 0, frame.length);
        assertFalse(receiver.verify(macBytes, 0), "a replayed frame must fail");
        assertTrue(receiver.mismatch("PAGES frame").getMessage().contains("frame 1 of the source's background stream"));
    }

    @Test
    void combinationsThatCannotWorkAreRefused() throws Exception {
        TckCredentials c = TckCredentials.get();
        TckRam src = pairs.later(TckRam.of(MIB));
        TckRam dst = pairs.later(TckRam.of(MIB));
        TransportException none = assertThrows(TransportException.class,
                () -> pairs.later(Transports.listen("aeron:udp?endpoint=127.0.0.1:0&frame-mac=on", new TransportContext().layout(dst.layout()))));
        assertEquals(Kind.INVALID_URI, none.kind(), none.toString());
        assertTrue(none.getMessage().contains("frame-mac=on needs authentication"), none.getMessage());
        TransportException bad = assertThrows(TransportException.class,
                () -> pairs.later(Transports.listen("aeron:udp?endpoint=127.0.0.1:0&frame-mac=yes&psk-file=" + c.psk,
                        new TransportContext().layout(dst.layout()))));
        assertTrue(bad.getMessage().contains("frame-mac") && bad.getMessage().contains("yes"), bad.getMessage());
        Listener l = pairs.later(Transports.listen("aeron:udp?endpoint=127.0.0.1:0&frame-mac=on&psk-file=" + c.psk,
                new TransportContext().layout(dst.layout())));
        String without = l.uri().replace("frame-mac=on", "frame-mac=off");
        TransportException refused = assertThrows(TransportException.class, () -> pairs.later(Transports.connect(without,
                new TransportContext().layout(src.layout()).handler(new Pairs.Recorder()).connectTimeoutNs(TimeUnit.SECONDS.toNanos(10)))));
        assertEquals(Kind.HANDSHAKE, refused.kind(), refused.toString());
        assertTrue(refused.getMessage().contains("frame-mac=on"), refused.getMessage());
    }
}
