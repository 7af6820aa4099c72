"""The command lines of the experiments: run a sweep, report it, plot it."""
