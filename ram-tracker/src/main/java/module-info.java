/** Guest RAM regions, dirty bitmaps, dirty-log sources, zero and balloon page skipping. */
module io.pagewire.ramtracker {
}
