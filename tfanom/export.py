"""`python -m tfanom.export`: the command line of `tfanom.cli.export`."""

from tfanom.cli.export import run_main

if __name__ == '__main__':
  run_main()
