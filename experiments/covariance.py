r"""Prints how a run's Mahalanobis AP depends on the covariance estimate (experiments/mahalanobis_covariance.py).

  python -m experiments.covariance --workdir=runs/digits/holdout3/rotation/seed0
"""

import functools
import json
import sys

from absl import app, flags

from tfanom.cli.flags import run_command

def command(flag_values=flags.FLAGS):
  """Defines the command's flags in `flag_values`; returns its main."""
  flags.DEFINE_string('workdir', None, 'A finished tfanom.train run.', required=True,
                      flag_values=flag_values)
  flags.DEFINE_string('data_dir', None, "Replaces the run's --data_dir.", flag_values=flag_values)
  return functools.partial(main, settings=flag_values)


def main(argv, settings):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from tfanom.cli.startup import import_tensorflow_quietly  # pylint: disable=g-import-not-at-top
  import_tensorflow_quietly()  # without TensorFlow's native start-up lines, as tfanom's commands
  from .mahalanobis_covariance import compare_covariances  # pylint: disable=g-import-not-at-top
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  with reported_as_one_line('experiments.covariance'):
    report = compare_covariances(settings.workdir, settings.data_dir,
                                 log=lambda line: print(line, file=sys.stderr))
  print(json.dumps(report, indent=2))


if __name__ == '__main__':
  run_command(command(), sys.modules[__name__])
