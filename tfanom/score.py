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

from absl import flags  # noqa: E402  pylint: disable=g-import-not-at-top

from tfanom.inference.image_files import ScoreConfig, score_files  # noqa: E402
from tfanom.cli import flags as cli_flags  # noqa: E402
from tfanom.cli.flags import config_main, define_flags, run_command  # noqa: E402

# --help lists the key flags of the main module: the generated ones count as this module's.
_SETTINGS = define_flags(ScoreConfig)
flags.adopt_module_key_flags(cli_flags)
main = config_main('tfanom.score', ScoreConfig, _SETTINGS, score_files)


def run_main():
  """The `tfanom-score` console script."""
  run_command(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
