/**
 * Dirty-log sources behind one interface ({@link io.pagewire.ramtracker.dirty.DirtyLogSource}):
 * userfaultfd async write-protect with {@code PAGEMAP_SCAN}
 * ({@link io.pagewire.ramtracker.dirty.UffdWriteTracker}) and a VMM's {@code KVM_GET_DIRTY_LOG}
 * bitmaps ({@link io.pagewire.ramtracker.dirty.ExternalDirtyLog}).
 *
 * <p>Invariant: a page written while tracking is reported by a later collect covering it; a
 * page written during a collect is reported by that collect or the next. Where the kernel lacks
 * a feature, {@code unavailabilityCause} names it.
 *
 * <p>Threading: start, collect, stop and close are serialised per source; collect marks its
 * sink on the calling thread. {@code ExternalDirtyLog.feed} may run on any thread at any time.
 */
package io.pagewire.ramtracker.dirty;
