r"""Scores a trained run's whole evaluation set with every anomaly score.

  python -m tfanom.evaluate --workdir=runs/digits/holdout0_rotation_seed0
  python -m tfanom.evaluate --workdir=DIR --scores=msp,odin,knn
  python -m tfanom.evaluate --workdir=OUT --export_dir=models/digits/1    # an exported model

Restores the latest checkpoint in --workdir (or loads --export_dir) and writes eval.json (AP, AUROC,
AUPR-In and FPR at 95% TPR per score, accuracy, skew) and scores.npz (per-example scores, labels,
is_anomaly) in --workdir, then prints a table. Scores: msp, odin, energy, max_logit, mahalanobis,
knn and, for models with a rotation head, rotation; all are higher for more anomalous inputs.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'The training run to evaluate; eval.json, '
                               'scores.npz and the feature cache are written there.',
                               required=True)
_EXPORT_DIR = flags.DEFINE_string('export_dir', None, 'Evaluate this exported SavedModel (a '
                                  'version folder written by tfanom.export) instead of the '
                                  'checkpoint in --workdir.')
_SCORES = flags.DEFINE_list('scores', [], 'Scores to compute (comma-separated); default all that '
                            'apply: msp,odin,energy,max_logit,mahalanobis,knn,rotation.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, "Replaces the run's --data_dir.")
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, "Images per batch; default the run's "
                                   'evaluation batch.')
_ODIN_TEMPERATURE = flags.DEFINE_float('odin_temperature', None, "ODIN's temperature; default "
                                       "the run's (1000). Never tuned on anomalies.")
_ODIN_EPSILON = flags.DEFINE_float('odin_epsilon', None, "ODIN's input step on [0, 1] pixels; "
                                   "default the run's (5e-5).")
_KNN_K = flags.DEFINE_integer('knn_k', 50, 'Neighbour whose distance is the KNN score (capped at '
                              'the number of training images).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  from tfanom.evaluation import EvalConfig, evaluate  # pylint: disable=g-import-not-at-top
  config = EvalConfig(
      workdir=_WORKDIR.value, export_dir=_EXPORT_DIR.value, scores=tuple(_SCORES.value),
      data_dir=_DATA_DIR.value, batch_size=_BATCH_SIZE.value,
      odin_temperature=_ODIN_TEMPERATURE.value, odin_epsilon=_ODIN_EPSILON.value,
      knn_k=_KNN_K.value)
  with reported_as_one_line('tfanom.evaluate'):
    evaluate(config, log=lambda line: print(line, flush=True))


if __name__ == '__main__':
  app.run(main)
