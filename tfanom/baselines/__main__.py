r"""Scores a dataset's test split with one of Appendix C's trivial baselines (no network).

  python -m tfanom.baselines --dataset=cifar10 --data_dir=~/tensorflow_datasets \
      --method=gaussian_mixture          # or --method=edge_energy; --holdout=cat for one class
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tfanom.baselines import BaselineConfig, run_baseline  # noqa: E402
from tfanom.cli.flags import config_command, run_command  # noqa: E402

command = config_command('tfanom.baselines', BaselineConfig, run_baseline, quiet=False)


def run_main():
  """The `tfanom-baselines` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
