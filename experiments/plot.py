"""`python -m experiments.plot`: the command line of `experiments.cli.plot`."""

from experiments.cli.plot import run_main

if __name__ == '__main__':
  run_main()
