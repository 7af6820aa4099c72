"""Rotation prediction (Gidaris et al. 2018) as the auxiliary task of paper section 5.

The task sees only rotated, unaugmented images and updates only the trunk and its own linear head:
it is not data augmentation, the classification head never sees a rotated image.
"""

import keras
import tensorflow as tf

from tfanom.config import check_train_setting
from tfanom.models.trunk import checkpoint_variables

# 'rot90': the four rotations the paper describes. 'official': what the official code applies
# instead (identity, vertical flip, transpose, transpose of the vertical flip).
NUM_ROTATIONS = 4


def transform(images, index: int, rotations: str = 'rot90'):
  """The `index`-th of the four transformations of a batch [B, H, W, C]."""
  if rotations == 'rot90':
    return tf.image.rot90(images, k=index)  # counter-clockwise by 90 * index degrees
  flipped = images if index % 2 == 0 else tf.reverse(images, axis=[1])
  return flipped if index < 2 else tf.transpose(flipped, [0, 2, 1, 3])


def rotate_batch(images, rotations: str = 'rot90'):
  """All four transformations of every image, stacked by transformation, with their labels."""
  batch = tf.shape(images)[0]
  rotated = tf.concat([transform(images, k, rotations) for k in range(NUM_ROTATIONS)], axis=0)
  labels = tf.repeat(tf.range(NUM_ROTATIONS, dtype=tf.int64), batch)
  return rotated, labels


class RotationTask:
  """Predicts which of the four rotations was applied, from the shared trunk's features.

  A batch of B/4 images becomes B rotated images, so the auxiliary step costs as much as a
  classification step.
  """
  name = 'rotation'
  loss_terms_per_image = NUM_ROTATIONS  # one classification of each rotated copy

  def __init__(self, rotations: str = 'rot90'):
    check_train_setting('rotations', rotations)
    self.rotations = rotations
    # float32 logits under mixed precision, as the class head's.
    self.head = keras.layers.Dense(NUM_ROTATIONS, name='rotation_head', dtype='float32')

  def build(self, model, image_shape):
    del image_shape  # every size rotates
    self.head.build((None, model.class_head.kernel.shape[0]))

  @property
  def trainable_variables(self):
    return self.head.trainable_variables

  @property
  def checkpoint_variables(self):
    return checkpoint_variables(self.head)

  def train_variables(self, model, norm_task):
    return model.trunk_variables(norm_task) + self.trainable_variables

  def loss(self, model, images, training=False, norm_task=0, update_stats=True):
    logits, labels = self.logits_and_labels(model, images, training, norm_task, update_stats)
    per_term = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return per_term, tf.argmax(logits, -1) == labels

  def logits_and_labels(self, model, images, training=False, norm_task=0, update_stats=True):
    """Rotation logits for every rotated copy of `images` (in [0, 1]) and the true rotations."""
    rotated, labels = rotate_batch(images, self.rotations)
    features = model.features(rotated, training=training, task=norm_task,
                              update_stats=update_stats)
    return self.head(features), labels
