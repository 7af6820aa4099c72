"""Evaluation during training: every evaluation example scored by MSP and ODIN under the run's
strategy, and the accuracy, skew and AP that the history and results.json report."""

import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics, scores
from tfanom.config import TrainConfig
from tfanom.data.pipeline import to_unit_range
from tfanom.inference.scorer import Scorer


def make_eval_step(config: TrainConfig, model, strategy: tf.distribute.Strategy):
  """`eval_step(batch)`: labels, predictions and (with a held-out class) MSP and ODIN scores of
  one distributed batch, gathered from every replica in replica order."""
  scorer = Scorer(model, tta=config.tta)
  odin_step = scores.odin_unit_step(config.odin_epsilon, config.odin_step)

  def replica_eval(batch):
    images = to_unit_range(batch['image'])
    logits = scorer.logits(images)
    outputs = dict(label=batch['label'], prediction=tf.argmax(logits, -1))
    if config.holds_out:  # --holdout=none measures accuracy alone
      outputs.update(msp=scores.msp(logits), odin=scorer.odin_scores(
          images, config.odin_temperature, odin_step))
    return outputs

  if config.xla:
    replica_eval = tf.function(replica_eval, jit_compile=True)

  @tf.function
  def eval_step(batch):
    per_replica = strategy.run(replica_eval, args=(batch,))
    # Every worker receives every replica's scores, in replica order.
    return {key: strategy.gather(value, axis=0) for key, value in per_replica.items()}

  return eval_step


def evaluate(eval_step, dataset) -> tuple[dict, dict]:
  """Runs `eval_step` over a distributed dataset; returns (metrics in %, per-example arrays)."""
  parts = {}
  for batch in dataset:
    for key, value in eval_step(batch).items():
      parts.setdefault(key, []).append(value.numpy())
  arrays = {key: np.concatenate(values) for key, values in parts.items()}
  return summarize_scores(arrays), arrays


def summarize_scores(arrays: dict) -> dict:
  """Accuracy on known classes, skew and AP per score, all in percent."""
  is_anomaly = arrays['label'] < 0
  # Without a held-out class (--holdout=none) there is nothing to rank: accuracy only.
  return dict(
      metrics.classification_summary(arrays['label'], arrays['prediction']),
      ap={name: 100.0 * float(metrics.average_precision(is_anomaly, arrays[name]))
          for name in ('msp', 'odin')} if is_anomaly.any() else {},
      **metrics.masking_by_metric(arrays, ('msp', 'odin')))
