/**
 * Pages that are not sent (seed 002): vectorised zero detection
 * ({@link io.pagewire.ramtracker.scan.ZeroScanner}), ballooned pages
 * ({@link io.pagewire.ramtracker.scan.BalloonMap}), and the classification of a range into
 * ordered runs of normal, zero and balloon pages ({@link io.pagewire.ramtracker.scan.PageClassifier}).
 *
 * <p>Invariants: runs handed to a {@link io.pagewire.ramtracker.scan.RunSink} are ordered, never
 * overlap, and adjacent pages of one kind are one run; ballooned and never-populated pages are
 * never read; nothing is allocated per page or per run.
 *
 * <p>Threading: zero scanners are stateless; a balloon map is marked from any thread; a
 * classifier belongs to one thread at a time.
 */
package io.pagewire.ramtracker.scan;
