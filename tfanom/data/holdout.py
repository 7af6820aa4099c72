"""The hold-out-class protocol: train on K-1 classes, test on all K with the held-out one as anomaly."""

import dataclasses

import numpy as np
from absl import logging

from tfanom.data.arrays import LabelledImages, Source, stratified_mask, value_counts
from tfanom.errors import UsageError

ANOMALY_LABEL = -1
VALIDATION_FRACTION = 0.2
NO_HOLDOUT = -1  # holdout_index of --holdout=none: every class is known


def holds_nothing_out(holdout: str | int) -> bool:
  """--holdout=none: every class is known and only accuracy is measured."""
  return str(holdout).lower() == 'none'


def holdout_text(index: int, name: str) -> str:
  """How logs and tables name the held-out class."""
  return 'no class held out' if index == NO_HOLDOUT else f'anomaly = class {index} ({name})'


@dataclasses.dataclass(frozen=True)
class HoldoutSplit:
  """Training data without the held-out class, and an evaluation set that keeps every example."""
  dataset: str
  holdout_index: int
  holdout_name: str
  known_class_names: tuple[str, ...]  # the K-1 training classes, in their new label order
  train: LabelledImages  # labels relabelled 0..K-2
  evaluation: LabelledImages  # labels relabelled 0..K-2, ANOMALY_LABEL for the held-out class
  mean: np.ndarray  # per-channel mean of the training images in [0, 1]
  std: np.ndarray  # per-channel std of the training images in [0, 1]

  @property
  def num_classes(self):
    return len(self.known_class_names)

  @property
  def is_anomaly(self):
    return self.evaluation.labels == ANOMALY_LABEL


def resolve_holdout(holdout: str | int, class_names, class_ids=()) -> int:
  """A hold-out class given by index, by name or by id (e.g. a WordNet id)."""
  text = str(holdout)
  if text in class_names:
    index = class_names.index(text)
    if text.isdigit() and int(text) != index:
      # Folders named 0..10 sort as text (0, 1, 10, 2, ...): the name wins, and is said.
      other = (f'; index {text} is {class_names[int(text)]!r}' if int(text) < len(class_names)
               else '')
      logging.warning('--holdout=%s takes the class named %r, class index %d%s', text, text,
                      index, other)
    return index
  if text in class_ids:
    return class_ids.index(text)
  try:
    index = int(text)
  except ValueError:
    raise UsageError(f'--holdout={text} is not a class of this dataset: give an index 0..'
                     f'{len(class_names) - 1} or one of {", ".join(class_names)}') from None
  if not 0 <= index < len(class_names):
    raise UsageError(f'--holdout={index} is out of range: this dataset has {len(class_names)} '
                     f'classes, so give 0..{len(class_names) - 1} or a class name')
  return index


def relabel(labels: np.ndarray, holdout_index: int) -> np.ndarray:
  """Classes above the held-out one move down by one; the held-out class becomes ANOMALY_LABEL."""
  if holdout_index == NO_HOLDOUT:
    return labels.astype(np.int64)
  relabelled = np.where(labels > holdout_index, labels - 1, labels)
  return np.where(labels == holdout_index, ANOMALY_LABEL, relabelled).astype(np.int64)


def make_holdout(source: Source, holdout: str | int, validation: bool = False,
                 seed: int = 0) -> HoldoutSplit:
  """Builds the hold-out split of `source`; `holdout='none'` keeps every class known.

  With `validation`, a seeded, stratified 20% of the *training* data (all K classes) replaces the
  test set, as the paper does to tune lambda; the held-out class's share of it keeps the validation
  set's anomalies, so AP can be tuned without ever touching the test set.
  """
  if len(source.class_names) < 3:
    raise UsageError(f'{source.name} has {len(source.class_names)} classes: holding one out leaves '
                     'fewer than two known classes, and a one-class classifier scores every '
                     'image alike; use a dataset with at least three classes')
  if holds_nothing_out(holdout):
    index, name = NO_HOLDOUT, 'none'
  else:
    index = resolve_holdout(holdout, list(source.class_names), list(source.class_ids))
    name = source.class_names[index]
  evaluation = source.test
  keep = source.train.labels != index
  if validation:
    held = stratified_mask(source.train.labels, VALIDATION_FRACTION, seed)
    evaluation, keep = source.train.select(held), keep & ~held
  train = source.train.select(keep)
  mean, std = statistics_of_counts(training_value_counts(source.train, keep, train.images))
  return HoldoutSplit(
      dataset=source.name,
      holdout_index=index,
      holdout_name=name,
      known_class_names=tuple(n for i, n in enumerate(source.class_names) if i != index),
      train=LabelledImages(train.images, relabel(train.labels, index)),
      evaluation=LabelledImages(evaluation.images, relabel(evaluation.labels, index)),
      mean=mean,
      std=std)


def training_value_counts(images: LabelledImages, keep: np.ndarray, kept) -> np.ndarray:
  """The value counts per channel [C, 256] of the rows `keep` of `images` (`kept`: those rows).

  With the counts per class a prepared file stores, only the rows left out of the classes that
  keep some are read (none for a hold-out split, the validation share with --validation): a
  class's kept rows count its stored counts minus those. The counts are exact integers either way,
  so the statistics are the same bits as from reading every kept row.
  """
  if images.value_counts is None:
    return value_counts(kept)[0]
  classes = np.unique(images.labels[keep])
  left_out = ~keep & np.isin(images.labels, classes)
  counts = images.value_counts[classes].sum(0)
  if left_out.any():
    counts -= value_counts(images.select(left_out).images)[0]
  return counts


def statistics_of_counts(counts: np.ndarray):
  """Per-channel mean and std in [0, 1] of uint8 images whose value counts are `counts` [C, 256].

  From counts of the 256 values: on ImageNet-sized sets this is an order of magnitude faster than
  float sums.
  """
  counts = counts.astype(np.float64)
  values = np.arange(256) / 255.0
  total = counts.sum(1)
  mean = counts @ values / total
  std = np.sqrt(np.maximum(counts @ np.square(values) / total - np.square(mean), 0.0))
  return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def channel_statistics(images: np.ndarray):
  """Per-channel mean and std of uint8 images scaled to [0, 1], read in bounded chunks."""
  return statistics_of_counts(value_counts(images)[0])
