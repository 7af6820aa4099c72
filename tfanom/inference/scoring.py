"""Scores arrays of uint8 images batch by batch, and fits the feature statistics the scores need.

`tfanom.evaluate` scores the evaluation set with it, and `tfanom.export` its calibration images; the
formulas are `tfanom.inference.scorer.compute_scores`, which the SavedModel's signatures call too.
"""

import numpy as np
import tensorflow as tf

from tfanom.data.pipeline import to_unit_range
from tfanom.inference.features import FeatureAccumulator, FeatureStatistics
from tfanom.inference.scorer import Batch, compute_scores
from tfanom.progress import batched, progress_batches


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


def score_images(module, images: np.ndarray, names, statistics: FeatureStatistics | None,
                 settings: dict, what: str = 'scoring', log=print) -> dict:
  """The class prediction and the scores `names` of every uint8 image, in order.

  `settings`: batch_size, odin_temperature, odin_epsilon and (with `statistics`) knn_k.
  """
  kernel, bias = class_head(module)

  def batch_scores(images):
    batch = Batch(module, to_unit_range(images))
    return dict(prediction=tf.argmax(batch.logits, axis=-1),
                **compute_scores(batch, names, statistics, kernel, bias, settings.get('knn_k'),
                                 settings['odin_temperature'], settings['odin_epsilon']))

  return batched(batch_scores, images, settings['batch_size'], what, log)
