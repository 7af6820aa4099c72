r"""Scores a dataset's test split with one of Appendix C's trivial baselines (no network).

  python -m tfanom.baselines --dataset=cifar10 --data_dir=~/tensorflow_datasets \
      --method=gaussian_mixture          # or --method=edge_energy; --holdout=cat for one class
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from absl import flags  # noqa: E402  pylint: disable=g-import-not-at-top

from tfanom.baselines import BaselineConfig, run_baseline  # noqa: E402
from tfanom.cli import flags as cli_flags  # noqa: E402
from tfanom.cli.flags import config_main, define_flags, run_command  # noqa: E402

# --help lists the key flags of the main module: the generated ones count as this module's.
_SETTINGS = define_flags(BaselineConfig)
flags.adopt_module_key_flags(cli_flags)
main = config_main('tfanom.baselines', BaselineConfig, _SETTINGS, run_baseline, quiet=False)


def run_main():
  """The `tfanom-baselines` console script."""
  run_command(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
