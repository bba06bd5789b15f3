/**
 * The native layer: intent-level Java over the Linux calls guest RAM needs ({@code memfd_create},
 * {@code mmap}, {@code madvise}, {@code fallocate}, {@code lseek(SEEK_DATA/SEEK_HOLE)},
 * userfaultfd ioctls, {@code PAGEMAP_SCAN}). {@code java.lang.foreign.Linker} is used only in the
 * package-private {@code Libc}, which mirrors the C declarations and kernel constants.
 *
 * <p>Invariants: errno is captured per call into per-thread state; every failure is a
 * {@link io.pagewire.ramtracker.RamTrackerException} naming the call, its arguments, the errno
 * and what to do. Availability is probed once ({@link io.pagewire.ramtracker.linux.Linux},
 * {@link io.pagewire.ramtracker.linux.Userfaultfd}, {@link io.pagewire.ramtracker.linux.PageMap});
 * when native access is not enabled the reason names the {@code --enable-native-access} flag.
 *
 * <p>Threading: every class here may be used from any thread; descriptors are closed only
 * after their users stopped.
 */
package io.pagewire.ramtracker.linux;
