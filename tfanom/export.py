r"""Exports a trained run as a SavedModel for TF Serving.

  python -m tfanom.export --workdir=runs/digits/holdout0_rotation_seed0 --export_dir=models/digits/1

--export_dir is a numbered version folder, as TF Serving expects. The SavedModel takes raw uint8
images [batch, H, W, C] of the training size; signature `serving_default` returns probabilities,
class_id, class_name, msp_score, energy_score and max_logit_score, signature `odin` returns
odin_score; every *_score is higher for more anomalous images. See the README, "Serving with TF
Serving".
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'The training run whose latest checkpoint is '
                               'exported.', required=True)
_EXPORT_DIR = flags.DEFINE_string('export_dir', None, 'Where to write the SavedModel: a numbered '
                                  'version folder such as models/digits/1.', required=True)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a non-empty --export_dir.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, "Replaces the run's --data_dir (the class "
                                'names and image size come from the data).')
_ODIN_TEMPERATURE = flags.DEFINE_float('odin_temperature', None, "ODIN's temperature in the "
                                       "`odin` signature; default the run's (1000).")
_ODIN_EPSILON = flags.DEFINE_float('odin_epsilon', None, "ODIN's input step in the `odin` "
                                   "signature; default the run's (5e-5).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  from tfanom.checkpoints import load_run  # pylint: disable=g-import-not-at-top
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  from tfanom.serving import check_export_dir, export  # pylint: disable=g-import-not-at-top
  with reported_as_one_line('tfanom.export'):
    check_export_dir(_EXPORT_DIR.value, _OVERWRITE.value)
    run = load_run(_WORKDIR.value, _DATA_DIR.value)
    path = export(run, _EXPORT_DIR.value, _OVERWRITE.value, _ODIN_TEMPERATURE.value,
                  _ODIN_EPSILON.value)
  print(f'exported {run.checkpoint} (anomaly = class {run.split.holdout_index} '
        f'({run.split.holdout_name})) to {path}: signatures serving_default, odin')


if __name__ == '__main__':
  app.run(main)
