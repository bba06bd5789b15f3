/**
 * Postcopy on the destination: the guest runs before all its RAM has arrived, and every access to a
 * missing page blocks until the page is placed. {@link io.pagewire.ramtracker.postcopy.PostcopyRegion}
 * registers guest RAM with userfaultfd (MISSING and MINOR over a memfd), places pages atomically
 * and exactly once, and reads fault events.
 *
 * <h2>Threading</h2>
 * Placement may run on several threads at once (urgent answers, background push, local MINOR
 * resolution); fault events are read by one thread.
 */
package io.pagewire.ramtracker.postcopy;
