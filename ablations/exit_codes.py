"""Exit statuses of every command, in one place (the README's "Exit status" lists them)."""

EXIT_OK = 0
EXIT_FAILURE = 1  # anything unexpected
EXIT_BAD_INPUT = 2  # a study or config file, an option, data that is missing: nothing was written
EXIT_DIVERGED = 3  # a single `train` whose loss became NaN or infinite
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT
EXIT_TERMINATED = 143  # SIGTERM (a scheduler stopping the job): 128 + 15; the run resumes where it stopped
