"""`python -m experiments.report`: the command line of `experiments.cli.report`."""

from experiments.cli.report import run_main

if __name__ == '__main__':
  run_main()
