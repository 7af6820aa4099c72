r"""Prints how a run's Mahalanobis AP depends on the covariance estimate (experiments/mahalanobis_covariance.py).

  python -m experiments.covariance --workdir=runs/digits/holdout3/rotation/seed0
"""

import sys

from .diagnostic_command import run_diagnostic


if __name__ == '__main__':
  run_diagnostic(sys.modules[__name__], 'mahalanobis_covariance:compare_covariances',
                 'A finished tfanom.train run.')
