"""Wide ResNets (Zagoruyko & Komodakis 2016) with task-aware batch normalisation, the paper's network.

The trunk is shared by the classification head (here) and the auxiliary heads (`tfanom.auxiliary`).
"""

import dataclasses

import keras
import tensorflow as tf

from tfanom.config import check_train_setting
from tfanom.models.trunk import CLASSIFICATION_TASK, TaskBatchNorm, Trunk


@dataclasses.dataclass(frozen=True)
class WRNConfig:
  depth: int = 28
  width: int = 10
  dropout: float = 0.3
  num_classes: int = 10
  # Groups appended after the standard three, each as wide as the third and downsampling at its
  # first block (the STL-10 and ImageNet variants of the paper add one).
  extra_groups: int = 0
  # 'cifar': one 3x3 convolution. The ImageNet variants downsample after a first convolution:
  # 'imagenet_maxpool' (official code: 7x7/2 convolution of 64 channels, 3x3/2 max pooling),
  # 'imagenet_avgpool' (the paper's text: 3x3 convolution, 2x2 average pooling).
  stem: str = 'cifar'
  # Normalisation parameter sets: 1 shares them between tasks, 2 gives the auxiliary task its own.
  norm_tasks: int = 1
  padding: str = 'zeros'  # or 'reflect' (the CPC trick of Appendix B)

  def __post_init__(self):
    for name in ('depth', 'width', 'dropout', 'extra_groups', 'stem', 'padding'):
      check_train_setting(name, getattr(self, name))

  @property
  def blocks_per_group(self):
    return (self.depth - 4) // 6


class PaddedConv(keras.layers.Layer):
  """A bias-free convolution with explicit symmetric padding (zeros or reflection)."""

  def __init__(self, filters, kernel_size, strides=1, padding='zeros', **kwargs):
    super().__init__(**kwargs)
    self.pad = (kernel_size - 1) // 2
    self.mode = 'REFLECT' if padding == 'reflect' else 'CONSTANT'
    self.conv = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding='valid', use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, 'fan_out', 'untruncated_normal'))

  def call(self, inputs):
    if self.pad:
      inputs = tf.pad(inputs, [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]],
                      mode=self.mode)
    return self.conv(inputs)


class WideBlock(keras.layers.Layer):
  """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 plus the shortcut."""

  def __init__(self, filters, strides, dropout, norm_tasks, padding, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.strides = filters, strides
    self.norm1 = TaskBatchNorm(norm_tasks)
    self.conv1 = PaddedConv(filters, 3, strides, padding)
    self.norm2 = TaskBatchNorm(norm_tasks)
    self.dropout = keras.layers.Dropout(dropout) if dropout else None
    self.conv2 = PaddedConv(filters, 3, 1, padding)
    self.shortcut = None

  def build(self, input_shape):
    if input_shape[-1] != self.filters or self.strides != 1:
      self.shortcut = PaddedConv(self.filters, 1, self.strides)

  def call(self, inputs, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    activated = tf.nn.relu(self.norm1(inputs, training=training, task=task,
                                            update_stats=update_stats))
    outputs = self.conv1(activated)
    outputs = tf.nn.relu(self.norm2(outputs, training=training, task=task,
                                          update_stats=update_stats))
    if self.dropout is not None:
      outputs = self.dropout(outputs, training=training)
    outputs = self.conv2(outputs)
    # As in the reference WRN, a projection shortcut starts from the activated input.
    shortcut = inputs if self.shortcut is None else self.shortcut(activated)
    return outputs + shortcut


class WideResNet(Trunk):
  """WRN-depth-width trunk, global average pooling and a linear classification head."""

  def __init__(self, config: WRNConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    if config.stem == 'imagenet_maxpool':
      self.stem = [PaddedConv(64, 7, 2, config.padding),
                   keras.layers.MaxPooling2D(3, 2, padding='same')]
    elif config.stem == 'imagenet_avgpool':
      self.stem = [PaddedConv(16, 3, 1, config.padding), keras.layers.AveragePooling2D(2)]
    else:
      self.stem = [PaddedConv(16, 3, 1, config.padding)]
    widths = [16 * config.width, 32 * config.width, 64 * config.width]
    widths += [widths[-1]] * config.extra_groups
    self.blocks = []
    for group, filters in enumerate(widths):
      for block in range(config.blocks_per_group):
        strides = 2 if group > 0 and block == 0 else 1
        self.blocks.append(WideBlock(filters, strides, config.dropout, config.norm_tasks,
                                     config.padding, name=f'group{group}_block{block}'))
    self.final_norm = TaskBatchNorm(config.norm_tasks)
    # float32 logits under mixed precision: softmax, losses and scores stay exact.
    self.class_head = keras.layers.Dense(config.num_classes, name='class_head', dtype='float32')

  def features(self, images, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    """Penultimate features of images in [0, 1]."""
    return self._pooled(images, self.blocks, training, task, update_stats)

  def encode_patches(self, patches, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    """One vector per patch (in [0, 1]) from the stem and the first three groups, normalised and
    pooled as the features are: CPC's patch encoder, sharing the trunk with classification."""
    return self._pooled(patches, self._encoder_blocks(), training, task, update_stats)

  def patch_encoder_layers(self):
    """The layers `encode_patches` runs."""
    return [*self.stem, *self._encoder_blocks(), self.final_norm]

  def _encoder_blocks(self):
    return self.blocks[:3 * self.config.blocks_per_group]

  def _pooled(self, images, blocks, training, task, update_stats):
    outputs = self.normalize(images)
    for layer in self.stem:
      outputs = layer(outputs)
    for block in blocks:
      outputs = block(outputs, training=training, task=task, update_stats=update_stats)
    outputs = tf.nn.relu(self.final_norm(outputs, training=training, task=task,
                                         update_stats=update_stats))
    return tf.reduce_mean(outputs, axis=[1, 2])


def build_wide_resnet(config: WRNConfig, image_shape, mean, std) -> WideResNet:
  """A built WideResNet for images of `image_shape` (H, W, C)."""
  model = WideResNet(config, name=f'wrn_{config.depth}_{config.width}')
  model.build_normalization(mean, std)
  model(tf.zeros((1, *image_shape)))
  return model
