package io.pagewire.transport.spi.tck;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;

import java.util.Arrays;
import java.util.List;

/** The fuzz targets' way from a seed corpus (real messages) to inputs: a few bytes overwritten, then cut or extended. */
public final class Mutations {
    private Mutations() {
    }

    /** @return {@code seeds} mutated: up to 6 bytes overwritten, the length kept or changed by up to 16 */
    public static Arbitrary<byte[]> of(List<byte[]> seeds) {
        return Arbitraries.of(seeds).flatMap(seed -> Combinators.combine(
                Arbitraries.integers().between(0, Math.max(0, seed.length - 1)).list().ofMaxSize(6),
                Arbitraries.bytes().list().ofSize(6),
                Arbitraries.oneOf(Arbitraries.just(seed.length), Arbitraries.integers().between(0, seed.length + 16)))
                .as((positions, values, length) -> {
                    byte[] m = Arrays.copyOf(seed, length);
                    for (int i = 0; i < positions.size(); i++) {
                        if (positions.get(i) < m.length) {
                            m[positions.get(i)] = values.get(i);
                        }
                    }
                    return m;
                }));
    }
}
