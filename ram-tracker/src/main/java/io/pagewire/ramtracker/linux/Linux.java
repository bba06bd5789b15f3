package io.pagewire.ramtracker.linux;

import io.pagewire.ramtracker.RamTrackerException;

import java.util.Locale;

/**
 * Probe for the native layer: is this a Linux system on which the C calls could be linked, with
 * native access enabled? Probed once, when this class is first used.
 *
 * <p>Finer probes sit with the feature they describe: {@link Userfaultfd#unavailabilityCause()},
 * {@link PageMap#unavailabilityCause()}.
 */
public final class Linux {
    private Linux() {
    }

    private static final String CAUSE = probe();
    private static final long BASE_PAGE_SIZE = CAUSE == null ? sysconfPageSize() : 4096;

    private static String probe() {
        String os = System.getProperty("os.name", "");
        if (!os.toLowerCase(Locale.ROOT).startsWith("linux")) {
            return "pagewire's RAM tracker needs Linux; this is " + os;
        }
        if (Libc.SYS_USERFAULTFD < 0) {
            return "pagewire's RAM tracker supports x86_64 and aarch64; this is " + System.getProperty("os.arch");
        }
        return Libc.LINK_FAILURE;
    }

    private static long sysconfPageSize() {
        try {
            long size = (long) Libc.SYSCONF.invokeExact(Libc.capture(), Libc.SC_PAGESIZE);
            return size > 0 ? size : 4096;
        } catch (Throwable t) {
            throw new ExceptionInInitializerError(t);
        }
    }

    /** @return true when the native layer can be used */
    public static boolean isAvailable() {
        return CAUSE == null;
    }

    /**
     * @return why the native layer cannot be used (naming the flag or platform needed), or null
     *         when it can
     */
    public static String unavailabilityCause() {
        return CAUSE;
    }

    /**
     * @throws RamTrackerException with {@link #unavailabilityCause()} when the native layer cannot be used
     */
    public static void ensureAvailable() {
        if (CAUSE != null) {
            throw new RamTrackerException(CAUSE);
        }
    }

    /**
     * @return true when native access is enabled for this code without a warning; when false,
     *         calls still work under the JDK's default {@code --illegal-native-access=warn} but print
     *         a warning: add {@link #nativeAccessFlag()}
     */
    public static boolean isNativeAccessEnabled() {
        return Linux.class.getModule().isNativeAccessEnabled();
    }

    /** @return the {@code --enable-native-access=...} flag for the way this module was loaded */
    public static String nativeAccessFlag() {
        return Libc.nativeAccessFlag();
    }

    /** @return the system page size (the base page size of anonymous memory and tmpfs) */
    public static long basePageSize() {
        return BASE_PAGE_SIZE;
    }

    /**
     * @param errno a C errno value
     * @return "ENOMEM (Cannot allocate memory)" style text
     */
    public static String describeErrno(int errno) {
        return switch (errno) {
            case 1 -> "EPERM (Operation not permitted)";
            case 2 -> "ENOENT (No such file or directory)";
            case 4 -> "EINTR (Interrupted system call)";
            case 6 -> "ENXIO (No such device or address)";
            case 9 -> "EBADF (Bad file descriptor)";
            case 11 -> "EAGAIN (Resource temporarily unavailable)";
            case 12 -> "ENOMEM (Cannot allocate memory)";
            case 13 -> "EACCES (Permission denied)";
            case 14 -> "EFAULT (Bad address)";
            case 16 -> "EBUSY (Device or resource busy)";
            case 17 -> "EEXIST (File exists)";
            case 19 -> "ENODEV (No such device)";
            case 22 -> "EINVAL (Invalid argument)";
            case 24 -> "EMFILE (Too many open files)";
            case 25 -> "ENOTTY (Inappropriate ioctl for device)";
            case 27 -> "EFBIG (File too large)";
            case 28 -> "ENOSPC (No space left on device)";
            case 29 -> "ESPIPE (Illegal seek)";
            case 38 -> "ENOSYS (Function not implemented)";
            case 75 -> "EOVERFLOW (Value too large for defined data type)";
            case 95 -> "EOPNOTSUPP (Operation not supported)";
            default -> "errno " + errno;
        };
    }

    /** Builds the exception for a failed call: what, with what, errno text, and the advice. */
    static RamTrackerException failure(String call, String what, int errno, String advice) {
        StringBuilder sb = new StringBuilder(call).append(" failed");
        if (what != null && !what.isEmpty()) {
            sb.append(" for ").append(what);
        }
        sb.append(": ").append(describeErrno(errno));
        if (advice != null && !advice.isEmpty()) {
            sb.append("; ").append(advice);
        }
        return new RamTrackerException(sb.toString(), errno);
    }

    /** Wraps a Throwable thrown by a method handle invocation (never expected from a linked downcall). */
    static RamTrackerException unexpected(String call, Throwable t) {
        if (t instanceof RamTrackerException r) {
            return r;
        }
        if (t instanceof RuntimeException r) {
            throw r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new RamTrackerException(call + " failed unexpectedly: " + t, t);
    }
}
