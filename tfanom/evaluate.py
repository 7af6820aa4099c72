"""`python -m tfanom.evaluate`: the command line of `tfanom.cli.evaluate`."""

from tfanom.cli.evaluate import run_main

if __name__ == '__main__':
  run_main()
