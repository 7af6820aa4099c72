"""Sweeps of `tfanom.train` runs that reproduce the paper's tables, their reports and figures.

  python -m experiments.sweep --sweep=table3 --root=DIR --parallel=2  # run or resume a sweep
  python -m experiments.report --root=DIR --compare=paper              # its table, and the paper's
  python -m experiments.plot --root=DIR                                # PR and training curves

See docs/reproducing.md.
"""
