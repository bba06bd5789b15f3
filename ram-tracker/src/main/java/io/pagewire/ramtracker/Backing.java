package io.pagewire.ramtracker;

/** What a guest RAM region is backed by. */
public enum Backing {
    /**
     * An anonymous memory file ({@code memfd_create}), mapped shared: the default. Its pages can
     * be mapped twice (postcopy MINOR faults), populated with {@code fallocate}, and its holes
     * (never written pages) are found with {@code SEEK_HOLE} without reading them.
     */
    MEMFD,
    /** A file on tmpfs ({@code /dev/shm}) or hugetlbfs, mapped shared. Same abilities as a memfd. */
    FILE,
    /**
     * Private anonymous memory. Never-populated pages are found through the page tables
     * ({@code PAGEMAP_SCAN}); transparent huge pages can back it ({@code MADV_HUGEPAGE}).
     */
    ANONYMOUS
}
