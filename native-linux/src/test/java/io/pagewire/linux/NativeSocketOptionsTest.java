package io.pagewire.linux;

import org.junit.jupiter.api.Test;

import java.net.InetSocketAddress;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Socket options reach the kernel with the width it expects (read back with getsockopt). */
class NativeSocketOptionsTest {

    @Test
    void maxPacingRateIsPassedAsSixtyFourBits() throws Exception {
        try (NativeSocket s = NativeSocket.listen(new InetSocketAddress("127.0.0.1", 0), 1)) {
            s.maxPacingRate(123_456_789L);
            assertEquals(123_456_789, s.getInt(Libc.SOL_SOCKET, Libc.SO_MAX_PACING_RATE, "SO_MAX_PACING_RATE"));
            // Above 4 GB/s: a 4-byte read reports the kernel's 32-bit cap, not a value cut to 32 bits on the way in.
            s.maxPacingRate(8_000_000_000L);
            assertEquals(0xFFFF_FFFFL, Integer.toUnsignedLong(s.getInt(Libc.SOL_SOCKET, Libc.SO_MAX_PACING_RATE, "SO_MAX_PACING_RATE")));
        }
    }
}
