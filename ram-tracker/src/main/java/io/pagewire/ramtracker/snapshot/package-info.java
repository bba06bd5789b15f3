/**
 * Live snapshots (seed 003): userfaultfd write-protection in synchronous mode, so that a write to a
 * page not yet saved stops the writer until the saver has copied the page and lifted the protection.
 *
 * <p>Invariants: memory registered here is touched by guests and tests from native code only (a fault
 * inside compiled Java code can hold up a JVM safepoint, see {@code NativeMemory}); a page is
 * unprotected only after its content at the snapshot's start instant has been copied. Threading: one
 * fault thread reads faults; protection changes may come from any thread.
 */
package io.pagewire.ramtracker.snapshot;
