r"""Prints how a run's Mahalanobis AP depends on the covariance estimate (experiments/mahalanobis_covariance.py).

  python -m experiments.covariance --workdir=runs/digits/holdout3/rotation/seed0
"""

import json
import sys

from absl import app, flags

from tfanom.cli.flags import run_command

_WORKDIR = flags.DEFINE_string('workdir', None, 'A finished tfanom.train run.', required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, "Replaces the run's --data_dir.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from .mahalanobis_covariance import compare_covariances  # pylint: disable=g-import-not-at-top
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  with reported_as_one_line('experiments.covariance'):
    report = compare_covariances(_WORKDIR.value, _DATA_DIR.value,
                                 log=lambda line: print(line, file=sys.stderr))
  print(json.dumps(report, indent=2))


if __name__ == '__main__':
  run_command(main, sys.modules[__name__])
