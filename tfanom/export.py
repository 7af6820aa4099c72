r"""Exports a trained run as a SavedModel for TF Serving.

  python -m tfanom.export --workdir=runs/digits/holdout0/rotation/seed0 --export_dir=models/digits/1

--export_dir is a numbered version folder, as TF Serving expects. The SavedModel takes raw uint8
images [batch, H, W, C] of the training size; signature `serving_default` returns probabilities,
class_id, class_name, one *_score per score of a forward pass (the feature scores from statistics
stored in the SavedModel), and anomaly_score and is_anomaly for --score at the threshold
calibrated on normal images for --normal_rate; signature `odin` returns odin_score and is_anomaly.
Every *_score is higher for more anomalous images. See docs/serving.md.
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tfanom.cli.flags import config_command, run_command  # noqa: E402
from tfanom.inference.savedmodel import ExportConfig, export_run, export_summary  # noqa: E402


def _export(config: ExportConfig, log) -> None:
  log(export_summary(*export_run(config, log)))


command = config_command('tfanom.export', ExportConfig, _export)


def run_main():
  """The `tfanom-export` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
