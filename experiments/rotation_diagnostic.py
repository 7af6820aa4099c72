"""What a run's rotation head does on the known and the held-out images, and why its scores rank
the held-out class as they do.

`diagnose_rotation_head(workdir)` passes every evaluation image, in its four rotations, through
the run's rotation head (the view `tfanom.evaluate` scores: the centre crop, no TTA) and the class
head (with the run's TTA, as `tfanom.evaluate` predicts), and reports, for the correctly
classified known images, the misclassified known images and the held-out images:
- `rotation_accuracy`: the share of the four rotations whose most likely rotation is the applied
  one, in percent;
- `mean_nll`, `median_nll`: the `rotation` score (the NLL of the applied rotation, summed over
  the four), averaged over the group.
A rotation head that orients held-out images as well as known ones has nothing to rank them by.
Beside them, `temperatures`: the AP and AUROC (all test images) and APc (the anomalies against the
correctly classified known images only) of the rotation NLL with the rotation logits divided by T
before the softmax; T = 1 is the `rotation` score. A head whose AP grows with T ranks by
confidently wrong rotations that a softer head would spread out.
"""

import functools

import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics
from tfanom.auxiliary import aux_norm_task
from tfanom.auxiliary.rotation import NUM_ROTATIONS
from tfanom.data.pipeline import center_crop, to_unit_range
from tfanom.errors import UsageError
from tfanom.inference.restore import load_run
from tfanom.inference.scorer import Scorer
from tfanom.progress import batched
from tfanom.workdir import read_config

TEMPERATURES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def rotation_nll(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
  """The NLL of the applied rotation summed over the rotations; `logits` [N, R applied, R]."""
  scaled = logits.astype(np.float64) / temperature
  scaled -= scaled.max(-1, keepdims=True)
  log_probabilities = scaled - np.log(np.exp(scaled).sum(-1, keepdims=True))
  applied = np.arange(logits.shape[1])
  return -log_probabilities[:, applied, applied].sum(-1)


def rotation_figures(logits: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> dict:
  """The diagnostic from the rotation logits [N, R applied, R], the labels (negative: held out)
  and the class predictions of N images."""
  is_anomaly = labels < 0
  correct = ~is_anomaly & (predictions == labels)
  groups = dict(known_correct=correct, known_misclassified=~is_anomaly & ~correct,
                held_out=is_anomaly)
  hits = (logits.argmax(-1) == np.arange(logits.shape[1])).mean(-1)
  nll = rotation_nll(logits)
  report = dict(groups={
      name: dict(images=int(mask.sum()),
                 rotation_accuracy=100.0 * float(hits[mask].mean()) if mask.any() else None,
                 mean_nll=float(nll[mask].mean()) if mask.any() else None,
                 median_nll=float(np.median(nll[mask])) if mask.any() else None)
      for name, mask in groups.items()})
  if is_anomaly.any() and (~is_anomaly).any():
    ranked = is_anomaly | correct
    report['temperatures'] = {}
    for temperature in TEMPERATURES:
      scores = rotation_nll(logits, temperature)
      summary = metrics.summarize(is_anomaly, scores)
      report['temperatures'][f'{temperature:g}'] = dict(
          ap=summary['ap'], auroc=summary['auroc'],
          ap_correct_only=metrics.summarize(is_anomaly[ranked], scores[ranked])['ap'])
  return report


def diagnose_rotation_head(workdir: str, data_dir: str | None = None, log=print) -> dict:
  """`rotation_figures` of the run's evaluation images (the latest checkpoint)."""
  aux = read_config(workdir).aux  # before the data, which may take minutes to load
  if aux != 'rotation':
    raise UsageError(f'--workdir={workdir} was trained with --aux={aux}: it has no rotation '
                     'head to diagnose; pass a run trained with --aux=rotation')
  run = load_run(workdir, data_dir, log=log)
  scorer = Scorer(run.model, run.aux_task, aux_norm_task(run.config), run.config.tta)
  crop = functools.partial(center_crop, size=run.config.crop_size)

  @tf.function
  def outputs(batch):
    unit = crop(to_unit_range(batch))
    logits, _ = scorer.rotation_logits(unit)  # stacked by rotation: [R * B, R]
    by_image = tf.transpose(tf.reshape(logits, [NUM_ROTATIONS, -1, NUM_ROTATIONS]), [1, 0, 2])
    return dict(rotation_logits=by_image, prediction=tf.argmax(scorer.logits(unit), -1))

  split = run.split
  arrays = batched(outputs, split.evaluation.images, run.config.eval_batch_size,
                   'rotation logits', log)
  return dict(workdir=workdir, checkpoint=run.checkpoint,
              **rotation_figures(arrays['rotation_logits'], split.evaluation.labels,
                                 arrays['prediction']))
