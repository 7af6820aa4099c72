"""`python -m tfanom.train`: the command line of `tfanom.cli.train`."""

from tfanom.cli.train import run_main

if __name__ == '__main__':
  run_main()
