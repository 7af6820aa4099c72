r"""Scores a folder of new images with an exported detector; writes a CSV and a gallery.

  python -m tfanom.score --export_dir=models/digits/1 --images=new_images/ --output=scored/

--images is a folder (read recursively) or a glob; every file TensorFlow decodes (JPEG, PNG, GIF,
BMP) is converted to the model's channels, resized and centre-cropped to its size. Files that are
not readable images are named, skipped and counted. OUTPUT gets scores.csv (path, class_name,
probability, every score, anomaly_score, is_anomaly), gallery.html, gallery.png and summary.json.
--labels_from_folders=cat,dog names the folders holding anomalies, to report AP and AUROC.
See docs/serving.md.
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tfanom.inference.image_files import ScoreConfig, score_files  # noqa: E402
from tfanom.cli.flags import config_command, run_command  # noqa: E402

command = config_command('tfanom.score', ScoreConfig, score_files)


def run_main():
  """The `tfanom-score` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
