package io.pagewire.perf.wire;

import io.pagewire.transport.spi.LaneKind;
import io.pagewire.transport.spi.RegionDescriptor;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.wire.FrameHeader;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.FrameValidator;
import io.pagewire.transport.spi.wire.Wire;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

/**
 * What the wire format costs per frame, outside the kernel: header encode (with its CRC32C),
 * decode and validation, and the per-batch data digest path (staging copy + CRC32C).
 * Run with {@code -prof gc} to see that none of it allocates.
 * <pre>
 * java -cp "perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*" org.openjdk.jmh.Main FrameCodecBenchmark -prof gc
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class FrameCodecBenchmark {
    @Param({"262144"})
    int batchBytes;

    private FrameHeader out;
    private FrameHeader in;
    private FrameValidator validator;
    private MemorySegment ram;
    private MemorySegment staging;
    private final CRC32C crc = new CRC32C();
    private long page;

    @Setup
    public void setup() {
        Arena arena = Arena.ofShared();
        out = new FrameHeader(arena);
        in = new FrameHeader(out.segment());
        validator = new FrameValidator(List.of(new RegionDescriptor("pc.ram", 1L << 30, 4096)), batchBytes, true);
        ram = arena.allocate(1L << 30, 4096);
        ram.fill((byte) 0x5a);
        staging = arena.allocate(batchBytes, 4096);
    }

    /** Header: encode with CRC, decode with CRC check, validate against the layout. */
    @Benchmark
    public int headerEncodeDecodeValidate() {
        page = (page + 64) & ((1 << 18) - 1);
        out.encode(FrameType.PAGES, FrameHeader.FLAG_DATA_DIGEST, 0, page, 64, 64 * 4096);
        in.decode();
        validator.validate(in, Role.DESTINATION, LaneKind.BACKGROUND);
        return in.payloadLength();
    }

    /** Data digest on the source: copy a batch out of guest RAM and checksum the copy. */
    @Benchmark
    public int digestStagingCopyAndCrc() {
        page = (page + 64) & ((1 << 18) - 64);
        MemorySegment.copy(ram, page * 4096, staging, 0, batchBytes);
        return Wire.crc32c(crc, staging, 0, batchBytes);
    }

    /** Data digest on the destination: checksum the batch where it landed. */
    @Benchmark
    public int digestCrcInPlace() {
        page = (page + 64) & ((1 << 18) - 64);
        return Wire.crc32c(crc, ram, page * 4096, batchBytes);
    }
}
