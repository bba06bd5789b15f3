/** The {@code pagewire} command line (picocli): {@code demo}, {@code send}, {@code receive}. */
package io.pagewire.agent.cli;
