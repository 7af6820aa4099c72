"""`python -m tfanom.prepare`: the command line of `tfanom.cli.prepare`."""

from tfanom.cli.prepare import run_main

if __name__ == '__main__':
  run_main()
