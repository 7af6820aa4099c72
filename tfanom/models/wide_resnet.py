"""Wide ResNets (Zagoruyko & Komodakis 2016) with task-aware batch normalisation.

The trunk is shared by the classification head (here) and the auxiliary heads (`tfanom.auxiliary`).
Normalisation by the training set's per-channel statistics lives inside the model, so the model
takes pixels in [0, 1]; ODIN's input step and exported SavedModels work in that space too.
"""

import dataclasses

import keras
import tensorflow as tf

from tfanom.errors import UsageError

CLASSIFICATION_TASK = 0  # index of the classification task's normalisation parameters
STEMS = ('cifar', 'imagenet_maxpool', 'imagenet_avgpool')


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
    if self.depth < 10 or (self.depth - 4) % 6:
      raise UsageError(f'--depth={self.depth} is not a Wide ResNet depth: use 6n+4 with n >= 1 '
                       '(10, 16, 22, 28, 40)')
    if self.width < 1:
      raise UsageError(f'--width={self.width} must be a positive widening factor')
    if not 0.0 <= self.dropout < 1.0:
      raise UsageError(f'--dropout={self.dropout} must be in [0, 1)')
    if self.stem not in STEMS:
      raise UsageError(f'--stem={self.stem} is unknown: choose one of {", ".join(STEMS)}')
    if self.padding not in ('zeros', 'reflect'):
      raise UsageError(f'--padding={self.padding} is unknown: choose zeros or reflect')

  @property
  def blocks_per_group(self):
    return (self.depth - 4) // 6


class TaskBatchNorm(keras.layers.Layer):
  """Batch normalisation with one set of scale, shift and moving statistics per task.

  `update_stats=False` normalises with batch statistics but leaves the moving ones alone: the
  auxiliary step uses it so that test-time statistics come from unrotated images only.
  """

  def __init__(self, num_tasks=1, momentum=0.9, epsilon=1e-5, **kwargs):
    super().__init__(**kwargs)
    self.num_tasks = num_tasks
    self.momentum = momentum
    self.epsilon = epsilon

  def build(self, input_shape):
    channels = (input_shape[-1],)

    def weights(name, initializer, trainable):
      return [self.add_weight(shape=channels, name=f'{name}_{task}', initializer=initializer,
                              trainable=trainable, autocast=False,
                              aggregation='none' if trainable else 'mean')
              for task in range(self.num_tasks)]

    self.gamma = weights('gamma', 'ones', True)
    self.beta = weights('beta', 'zeros', True)
    self.moving_mean = weights('moving_mean', 'zeros', False)
    self.moving_variance = weights('moving_variance', 'ones', False)

  def task_variables(self, task):
    return [self.gamma[task], self.beta[task]]

  def call(self, inputs, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    task = min(task, self.num_tasks - 1)
    compute_dtype = inputs.dtype
    inputs = tf.cast(inputs, tf.float32)
    # The fused kernel normalises in one pass over the activations (several times faster than
    # moments + batch_normalization on CPU and GPU), with the same biased batch variance.
    if training:
      outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma[task], self.beta[task], epsilon=self.epsilon, is_training=True)
      if update_stats:
        # The kernel returns the unbiased variance; the moving statistics average the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = variance * (count - 1.0) / count
        for moving, value in ((self.moving_mean[task], mean),
                              (self.moving_variance[task], variance)):
          moving.assign(moving * self.momentum + tf.stop_gradient(value) * (1.0 - self.momentum))
    else:
      outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma[task], self.beta[task], self.moving_mean[task],
          self.moving_variance[task], epsilon=self.epsilon, is_training=False)
    return tf.cast(outputs, compute_dtype)


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


class WideResNet(keras.Model):
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

  def build_normalization(self, mean, std):
    """Creates the input normalisation from training-set statistics (pixels in [0, 1])."""
    self.pixel_mean = self.add_weight(shape=(len(mean),), name='pixel_mean', trainable=False,
                                      initializer=keras.initializers.Constant(mean))
    self.pixel_std = self.add_weight(shape=(len(std),), name='pixel_std', trainable=False,
                                     initializer=keras.initializers.Constant(std))

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
    outputs = (images - self.pixel_mean) / self.pixel_std
    for layer in self.stem:
      outputs = layer(outputs)
    for block in blocks:
      outputs = block(outputs, training=training, task=task, update_stats=update_stats)
    outputs = tf.nn.relu(self.final_norm(outputs, training=training, task=task,
                                         update_stats=update_stats))
    return tf.reduce_mean(outputs, axis=[1, 2])

  def call(self, images, training=False):
    return self.class_head(self.features(images, training=training))

  def trunk_variables(self, task=CLASSIFICATION_TASK):
    """Trainable trunk variables that a step of `task` updates (its own normalisation only)."""
    excluded = {id(v) for layer in self._norm_layers()
                for other in range(layer.num_tasks) if other != min(task, layer.num_tasks - 1)
                for v in layer.task_variables(other)}
    head = {id(v) for v in self.class_head.trainable_variables}
    return [v for v in self.trainable_variables if id(v) not in excluded | head]

  def _norm_layers(self):
    return [layer for layer in self._flatten_layers() if isinstance(layer, TaskBatchNorm)]


def build_wide_resnet(config: WRNConfig, image_shape, mean, std) -> WideResNet:
  """A built WideResNet for images of `image_shape` (H, W, C)."""
  model = WideResNet(config, name=f'wrn_{config.depth}_{config.width}')
  model.build_normalization(mean, std)
  model(tf.zeros((1, *image_shape)))
  return model


def checkpoint_variables(layer: keras.layers.Layer) -> list:
  """Every variable of a Keras layer or model, for `tf.train.Checkpoint`, matched by position.

  tf.train.Checkpoint does not see inside Keras 3 layers (it would save only variables set
  directly as attributes), so checkpoints list the variables explicitly, in Keras' deterministic
  creation order: weights, batch-norm moving statistics and the dropout seed generators' states,
  without which a resumed run would draw other dropout masks than an uninterrupted one. Paths
  would not do as keys: Keras numbers unnamed layers per process.
  """
  return list(layer.variables)


def weight_decay_variables(variables):
  """Convolution and dense kernels; biases and normalisation parameters are not decayed."""
  return [v for v in variables if v.name == 'kernel']
