"""The one evaluator: scores batches of uint8 images with the scores of `tfanom.anomaly.REGISTRY`,
and fits the feature statistics the feature scores need.

Training's evaluation (`tfanom.training.eval_step`), `tfanom.evaluate` and `tfanom.export`'s
calibration all run an `Evaluator`; the SavedModel's signatures apply the same `Batch`.
"""

import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics
from tfanom.data.pipeline import to_unit_range
from tfanom.inference.features import FeatureAccumulator, FeatureStatistics
from tfanom.inference.scorer import Batch, fitted_inputs
from tfanom.progress import progress_batches


def feature_statistics(module, split, batch_size: int, fingerprint: str, cache_path: str,
                       log=print) -> FeatureStatistics:
  """The statistics of the training split's features, from the cache when it is for this model."""
  cached = FeatureStatistics.load(cache_path, fingerprint)
  if cached is not None:
    log(f'feature statistics: from {cache_path}')
    return cached
  accumulator = FeatureAccumulator(split.num_classes, len(split.train.images))
  for begin, batch in progress_batches(split.train.images, batch_size, 'training features', log):
    features, _ = module.features_and_logits(to_unit_range(batch))
    accumulator.update(features.numpy(), split.train.labels[begin:begin + len(batch)])
  statistics = accumulator.result(*class_head(module))
  statistics.save(cache_path, fingerprint)
  return statistics


def class_head(module):
  """The class head's kernel [D, C] and bias [C] as NumPy arrays."""
  return module.class_head_kernel.numpy(), module.class_head_bias.numpy()


class Evaluator:
  """The class prediction and the scores `names` of batches of uint8 images.

  `functions`: a Scorer or a ScoringModule (live or loaded); `inputs`: what the formulas take
  beside the batch (`Batch`). One traced step runs each batch under `strategy` (default: the
  current one): every replica scores its share, and the outputs are gathered from every replica
  in replica order. A batch is a dict with `image` and, optionally, `label`; with labels, the AP of
  every score streams through the Keras metric `AveragePrecision`, one update per gathered batch.
  """

  def __init__(self, functions, names, inputs: dict | None = None,
               strategy: tf.distribute.Strategy | None = None, jit_compile: bool = False):
    self.names = tuple(names)
    strategy = strategy or tf.distribute.get_strategy()

    def replica_step(batch):
      scored = Batch(functions, to_unit_range(batch['image']), inputs)
      labels = {'label': batch['label']} if 'label' in batch else {}
      return dict(labels, prediction=tf.argmax(scored.logits, -1), **scored.scores(self.names))

    if jit_compile:
      replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def step(batch):
      per_replica = strategy.run(replica_step, args=(batch,))
      return {key: strategy.gather(value, axis=0) for key, value in per_replica.items()}

    self.step = step
    self.average_precision = {name: metrics.AveragePrecision(name=f'ap_{name}')
                              for name in self.names}

  def run(self, batches, num_examples: int | None = None) -> tuple[dict, dict]:
    """(per-example arrays in order, AP per score in percent); the AP is empty without labels or
    without anomalies among them (nothing to rank). With `num_examples`, the rows after the first
    `num_examples` are padding, left out of the arrays and the AP."""
    for metric in self.average_precision.values():
      metric.reset_state()
    parts, seen = {}, 0
    for batch in batches:
      outputs = self.step(batch)
      rows = int(outputs['prediction'].shape[0])
      if num_examples is not None and seen + rows > num_examples:
        outputs = {key: value[:max(num_examples - seen, 0)] for key, value in outputs.items()}
      seen += rows
      if 'label' in outputs:
        is_anomaly = outputs['label'] < 0
        for name, metric in self.average_precision.items():
          metric.update_state(is_anomaly, outputs[name])
      for key, value in outputs.items():
        parts.setdefault(key, []).append(value.numpy())
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    if 'label' not in arrays or not (arrays['label'] < 0).any():
      return arrays, {}
    return arrays, {name: 100.0 * float(metric.result())
                    for name, metric in self.average_precision.items()}


def score_images(module, images: np.ndarray, names, statistics: FeatureStatistics | None,
                 settings: dict, what: str = 'scoring', log=print) -> dict:
  """The class prediction and the scores `names` of every uint8 image, in order, with progress,
  by an Evaluator under the default strategy.

  `settings`: batch_size, odin_temperature, odin_epsilon and (with `statistics`) knn_k.
  """
  fitted = fitted_inputs(statistics, *class_head(module), settings.get('knn_k'))
  # Tensors, not NumPy arrays: the traced step captures them instead of copying them into its
  # graph as constants (a graph is limited to 2 GB; the KNN bank alone can be larger).
  inputs = dict({name: tf.convert_to_tensor(value) for name, value in fitted.items()
                 if name != 'knn_k'}, knn_k=fitted['knn_k'],
                odin_temperature=settings['odin_temperature'],
                odin_epsilon=settings['odin_epsilon'])
  evaluator = Evaluator(module, names, inputs)
  batches = (dict(image=batch)
             for _, batch in progress_batches(images, settings['batch_size'], what, log))
  return evaluator.run(batches)[0]
