/**
 * The synthetic guest: vCPU threads writing guest RAM at a set rate and pattern, pausable and
 * throttleable through {@link io.pagewire.agent.GuestControl}. Used by the demo, the end-to-end
 * tests and the benchmarks in place of a real VM.
 */
package io.pagewire.agent.guest;
