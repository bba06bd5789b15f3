package io.pagewire.transport.spi;

/** Which end of a connection this is. Pages travel from the source to the destination. */
public enum Role {
    /** Connected to a destination; sends pages, answers page requests. */
    SOURCE,
    /** Accepted from a listener; receives pages, sends page requests. */
    DESTINATION
}
