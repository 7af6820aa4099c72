"""tf.data input pipelines for training and evaluation.

Each training epoch is a pure function of (seed, epoch, start step): a seeded permutation of the
training set and stateless augmentation keyed by the step. A resumed run therefore sees exactly the
batches an uninterrupted one would have, with no shuffle buffer to checkpoint. Images stay uint8
until they reach the training step (`to_unit_range`), which keeps host-to-device copies small.
"""

import numpy as np
import tensorflow as tf

from tfanom.data.holdout import HoldoutSplit
from tfanom.errors import UsageError

CROP_PADDING = 4
AUGMENTATIONS = ('crop_flip', 'crop', 'none')


def to_unit_range(images):
  """uint8 pixels to float32 in [0, 1], the space the model (and ODIN's step) works in."""
  return tf.cast(images, tf.float32) / 255.0


def random_crop_flip(images, seed, padding=CROP_PADDING, flip=True):
  """Zero-pad by `padding`, crop back at a random offset and mirror half of the batch.

  Vectorised over the batch (one gather per axis) so that augmentation costs a small fraction of
  a training step; `seed` is a stateless seed, shape [2].
  """
  height, width = images.shape[1], images.shape[2]
  batch = tf.shape(images)[0]
  padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
  row_seed, col_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  row_offsets = tf.random.stateless_uniform([batch], row_seed, 0, 2 * padding + 1, tf.int32)
  col_offsets = tf.random.stateless_uniform([batch], col_seed, 0, 2 * padding + 1, tf.int32)
  rows = row_offsets[:, None] + tf.range(height)[None, :]
  cols = col_offsets[:, None] + tf.range(width)[None, :]
  cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
  if not flip:
    return cropped
  mirror = tf.random.stateless_uniform([batch], flip_seed) < 0.5
  return tf.where(mirror[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


class InputPipeline:
  """Training and evaluation datasets of one hold-out split.

  Args:
    split: the hold-out split.
    batch_size: global classification batch; every training batch is full (the last partial batch
      of an epoch is left to the next epoch's permutation), every evaluation example is kept.
    aux_batch_size: global batch of unaugmented images for the auxiliary task, or 0 for none.
    augment: one of AUGMENTATIONS.
    seed: seeds the permutations and the augmentation.
  """

  def __init__(self, split: HoldoutSplit, batch_size: int, aux_batch_size: int = 0,
               augment: str = 'crop_flip', seed: int = 0):
    if augment not in AUGMENTATIONS:
      raise UsageError(f'--augment={augment} is unknown: choose one of {", ".join(AUGMENTATIONS)}')
    self.num_train = len(split.train)
    self.steps_per_epoch = self.num_train // batch_size
    if self.steps_per_epoch == 0:
      raise UsageError(f'--batch_size={batch_size} is larger than the {self.num_train} training '
                       'images of this split: use a smaller batch')
    self.batch_size = batch_size
    self.aux_batch_size = aux_batch_size
    self.augment = augment
    self.seed = seed
    # The only copy of the training arrays that TensorFlow holds; batches are gathered from it.
    self._train_images = tf.convert_to_tensor(split.train.images)
    self._train_labels = tf.convert_to_tensor(split.train.labels)
    self._eval_images = tf.convert_to_tensor(split.evaluation.images)
    self._eval_labels = tf.convert_to_tensor(split.evaluation.labels)

  def _batched_permutation(self, epoch, stream, batch_size, start_step):
    order = np.random.default_rng([self.seed, epoch, stream]).permutation(self.num_train)
    usable = self.steps_per_epoch * batch_size
    return order[:usable].reshape(self.steps_per_epoch, batch_size)[start_step:]

  def train_dataset(self, epoch: int, start_step: int = 0) -> tf.data.Dataset:
    """One epoch of batches from `start_step` on: {'image', 'label'} and, with an auxiliary task,
    'aux_image' (unaugmented, a separate permutation)."""
    steps = tf.range(start_step, self.steps_per_epoch, dtype=tf.int64)
    indices = {'cls': self._batched_permutation(epoch, 0, self.batch_size, start_step)}
    if self.aux_batch_size:
      indices['aux'] = self._batched_permutation(epoch, 1, self.aux_batch_size, start_step)
    epoch_seed = np.int64(self.seed) * 1_000_003 + epoch

    def gather(step, batch_indices):
      image = tf.gather(self._train_images, batch_indices['cls'])
      if self.augment != 'none':
        image = random_crop_flip(image, tf.stack([epoch_seed, step]),
                                 flip=self.augment == 'crop_flip')
      batch = {'image': image, 'label': tf.gather(self._train_labels, batch_indices['cls'])}
      if 'aux' in batch_indices:
        batch['aux_image'] = tf.gather(self._train_images, batch_indices['aux'])
      return batch

    dataset = tf.data.Dataset.from_tensor_slices((steps, indices))
    return dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, batch_size: int | None = None) -> tf.data.Dataset:
    """Every evaluation example, in order, as {'image', 'label'}; label < 0 marks an anomaly."""
    dataset = tf.data.Dataset.from_tensor_slices(
        {'image': self._eval_images, 'label': self._eval_labels})
    return dataset.batch(batch_size or self.batch_size).prefetch(tf.data.AUTOTUNE)
