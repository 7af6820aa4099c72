r"""Prints what a rotation run's rotation head does on the known and the held-out images
(experiments/rotation_diagnostic.py).

  python -m experiments.rotation_head --workdir=runs/rotation_small/folder/holdoutcat/rotation/seed0
"""

import sys

from .diagnostic_command import run_diagnostic


if __name__ == '__main__':
  run_diagnostic(sys.modules[__name__], 'rotation_diagnostic:diagnose_rotation_head',
                 'A tfanom.train run with --aux=rotation.')
