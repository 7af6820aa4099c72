r"""Scores a trained run's whole evaluation set with every anomaly score.

  python -m tfanom.evaluate --workdir=runs/digits/holdout0/rotation/seed0
  python -m tfanom.evaluate --workdir=DIR --scores=msp,odin,knn
  python -m tfanom.evaluate --workdir=OUT --export_dir=models/digits/1    # an exported model

Restores the latest checkpoint in --workdir (or loads --export_dir) and writes eval.json (AP, AUROC,
AUPR-In and FPR at 95% TPR per score, accuracy, skew) and scores.npz (per-example scores, labels,
is_anomaly) in --workdir, then prints a table. Every score is higher for more anomalous inputs
(docs/scores.md).
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tfanom.inference.evaluation import EvalConfig, evaluate  # noqa: E402
from tfanom.cli.flags import config_command, run_command  # noqa: E402

command = config_command('tfanom.evaluate', EvalConfig, evaluate)


def run_main():
  """The `tfanom-evaluate` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
