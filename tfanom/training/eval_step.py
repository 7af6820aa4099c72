"""Evaluation during training: the one `Evaluator` run under the run's strategy on every evaluation
example, with the scores training reports (MSP and ODIN), and the accuracy, skew and AP that the
history and results.json report."""

import tensorflow as tf

from tfanom.anomaly import TRAINING_SCORES, metrics, scores
from tfanom.config import TrainConfig
from tfanom.inference.scorer import Scorer
from tfanom.inference.evaluator import Evaluator


def make_evaluator(config: TrainConfig, model, strategy: tf.distribute.Strategy,
                   names=TRAINING_SCORES) -> Evaluator:
  """The evaluator of a training run: labels, predictions and (with a held-out class) the scores
  `names` of each distributed batch, gathered from every replica in replica order."""
  return Evaluator(
      Scorer(model, tta=config.tta),
      names if config.holds_out else (),  # --holdout=none measures accuracy alone
      dict(odin_temperature=config.odin_temperature,
           odin_epsilon=scores.odin_unit_step(config.odin_epsilon, config.odin_step)),
      strategy, jit_compile=config.xla)


def evaluate(evaluator: Evaluator, dataset, num_examples: int) -> tuple[dict, dict]:
  """Runs `evaluator` over the first `num_examples` rows of a distributed dataset; returns
  (metrics in %, per-example arrays): accuracy on known classes, skew, the streamed AP per score
  and the correct-only figures."""
  arrays, average_precision = evaluator.run(dataset, num_examples)
  return dict(metrics.classification_summary(arrays['label'], arrays['prediction']),
              ap=average_precision,
              **metrics.masking_by_metric(arrays, evaluator.names)), arrays
