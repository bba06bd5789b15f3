package io.pagewire.ramtracker.scan;

import java.util.Locale;

/** Chooses and holds the implementations, once. */
final class ZeroScanners {
    private ZeroScanners() {
    }

    static final String VECTOR_MODULE = "jdk.incubator.vector";
    static final ZeroScanner VECTOR;
    static final String VECTOR_CAUSE;
    static final ZeroScanner BEST;

    static {
        ZeroScanner vector = null;
        String cause;
        if (ModuleLayer.boot().findModule(VECTOR_MODULE).isEmpty()) {
            cause = "the Vector API module is not in this JVM: add --add-modules " + VECTOR_MODULE + " to the java command line";
        } else {
            try {
                // Loaded reflectively: the class links against jdk.incubator.vector, which must not
                // be touched when the module is absent.
                vector = (ZeroScanner) Class.forName(ZeroScanners.class.getPackageName() + ".VectorZeroScanner")
                        .getDeclaredConstructor().newInstance();
                cause = null;
            } catch (ReflectiveOperationException | LinkageError e) {
                cause = "the Vector API implementation could not be loaded: " + e;
            }
        }
        VECTOR = vector;
        VECTOR_CAUSE = cause;
        String forced = System.getProperty("pagewire.zeroScanner", "auto").toLowerCase(Locale.ROOT);
        BEST = switch (forced) {
            case "auto" -> vector != null ? vector : ScalarZeroScanner.INSTANCE;
            case "scalar" -> ScalarZeroScanner.INSTANCE;
            case "mismatch" -> MismatchZeroScanner.INSTANCE;
            case "vector" -> {
                if (vector == null) {
                    throw new IllegalStateException("pagewire.zeroScanner=vector, but " + cause);
                }
                yield vector;
            }
            default -> throw new IllegalArgumentException("pagewire.zeroScanner=" + forced + ": expected auto, vector, scalar or mismatch");
        };
    }
}
