"""`python -m experiments.sweep`: the command line of `experiments.cli.sweep`."""

from experiments.cli.sweep import run_main

if __name__ == '__main__':
  run_main()
