package io.pagewire.agent;

import io.pagewire.agent.cli.PagewireCommand;
import picocli.CommandLine;

/** Entry point of the {@code pagewire} command. */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        System.exit(PagewireCommand.commandLine().execute(args));
    }
}
