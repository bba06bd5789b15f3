/**
 * Test support shared by every module's tests (test scope only).
 *
 * <p>Threading: the watchdog keeps one daemon heartbeat thread per test JVM and one shell process
 * outside it; the listener callbacks run on JUnit's threads and share only a concurrent map.
 */
package io.pagewire.testsupport;
