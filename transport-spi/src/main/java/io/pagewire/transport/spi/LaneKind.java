package io.pagewire.transport.spi;

/** The two lanes of every connection. */
public enum LaneKind {
    /** The bulk page stream: precopy rounds, postcopy background push. Bounded in flight. */
    BACKGROUND,
    /** Page requests and the pages that answer them, control. Never waits behind background data. */
    URGENT
}
