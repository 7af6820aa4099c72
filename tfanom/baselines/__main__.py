"""`python -m tfanom.baselines`: the command line of `tfanom.cli.baselines`."""

from tfanom.cli.baselines import run_main

if __name__ == '__main__':
  run_main()
