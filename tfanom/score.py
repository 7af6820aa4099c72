"""`python -m tfanom.score`: the command line of `tfanom.cli.score`."""

from tfanom.cli.score import run_main

if __name__ == '__main__':
  run_main()
