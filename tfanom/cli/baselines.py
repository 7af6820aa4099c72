r"""Scores a dataset's test split with one of Appendix C's trivial baselines (no network).

  python -m tfanom.baselines --dataset=cifar10 --data_dir=~/tensorflow_datasets \
      --method=gaussian_mixture          # or --method=edge_energy; --holdout=cat for one class
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from absl import app, flags  # noqa: E402  pylint: disable=g-import-not-at-top

from tfanom.baselines import BaselineConfig, run_baseline  # noqa: E402
from tfanom.cli import flags as cli_flags  # noqa: E402
from tfanom.cli.flags import config_from_flags, define_flags, run_command  # noqa: E402
from tfanom.errors import reported_as_one_line  # noqa: E402

# --help lists the key flags of the main module: the generated ones count as this module's.
_SETTINGS = define_flags(BaselineConfig)
flags.adopt_module_key_flags(cli_flags)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  with reported_as_one_line('tfanom.baselines'):
    run_baseline(config_from_flags(BaselineConfig, _SETTINGS),
                 log=lambda line: print(line, flush=True))


def run_main():
  """The `tfanom-baselines` console script."""
  run_command(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
