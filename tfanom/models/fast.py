"""The fast network of `--preset=fast`: airbench94's 8-layer convolutional network (Jordan 2024).

A frozen 2x2 patch-whitening convolution (with a trainable bias) and GELU, then three groups of
conv3x3 - max-pool 2 - batch norm - GELU - conv3x3 - batch norm - GELU (64, 256 and 256 channels),
global max pooling and a linear class head; the features are scaled by 1/9 before the head.
Convolutions start as identities (dirac) on their first input-many filters; batch norm has no
scale, only a shift. It is a `Trunk`, like the Wide ResNet, so
the auxiliary tasks, the scores and the export use it unchanged.

On CIFAR-10's 32x32 images: 31x31 after whitening, then 15, 7 and 3 pixels after the groups.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfanom.errors import UsageError
from tfanom.models.trunk import CLASSIFICATION_TASK, TaskBatchNorm, Trunk

WIDTHS = (64, 256, 256)
WHITENING_KERNEL = 2
# airbench94: eigenvalue floor of the whitening and the logit scale. Batch-norm momentum 0.9, as in
# its variant without lookahead: airbench94's 0.6 is meant to go with lookahead averaging.
WHITENING_EPSILON = 5e-4
NORM_MOMENTUM = 0.9
FEATURE_SCALE = 1 / 9
WHITENING_IMAGES = 5000  # training images whose patches fit the whitening (airbench: 5000)
MIN_SIDE = WHITENING_KERNEL + 2 ** len(WIDTHS) - 1  # one pixel left after the last pooling


@dataclasses.dataclass(frozen=True)
class FastNetConfig:
  num_classes: int = 10
  widths: tuple[int, ...] = WIDTHS
  norm_tasks: int = 1  # as WRNConfig.norm_tasks


class DiracInitializer(keras.initializers.Initializer):
  """Identity on the first min(in, out) filters (the centre tap), PyTorch's default uniform
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the others, as airbench initialises its convolutions."""

  def __init__(self, seed=None):
    self.uniform = keras.initializers.VarianceScaling(1 / 3, 'fan_in', 'uniform', seed=seed)

  def __call__(self, shape, dtype=None):
    height, width, inputs, outputs = shape
    identity = np.zeros(shape, np.float32)
    kept = min(inputs, outputs)
    identity[height // 2, width // 2, np.arange(kept), np.arange(kept)] = 1.0
    is_identity = np.zeros(shape, bool)
    is_identity[..., :kept] = True
    return tf.where(is_identity, tf.constant(identity, dtype or 'float32'),
                    self.uniform(shape, dtype))


def whitening_kernel(patches: np.ndarray, epsilon: float = WHITENING_EPSILON) -> np.ndarray:
  """The whitening filters [k, k, C, 2*C*k*k] of flattened patches [N, k*k*C] (rows of a k x k x C
  patch): the eigenvectors of the uncentred patch covariance divided by sqrt(eigenvalue +
  epsilon), largest eigenvalue first, followed by their negatives (GELU keeps both signs)."""
  patches = patches.astype(np.float64)
  covariance = patches.T @ patches / len(patches)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  order = np.argsort(eigenvalues)[::-1]
  filters = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + epsilon)
  return np.concatenate([filters, -filters], axis=1).astype(np.float32)


def image_patches(images, kernel: int = WHITENING_KERNEL) -> np.ndarray:
  """Every k x k patch (stride 1, no padding) of float images [N, H, W, C], flattened to rows in
  the order of a convolution kernel [k, k, C]."""
  patches = tf.image.extract_patches(images, [1, kernel, kernel, 1], [1, 1, 1, 1], [1, 1, 1, 1],
                                     'VALID')
  return patches.numpy().reshape(-1, patches.shape[-1])


def whitening_sample(images: np.ndarray, seed: int, count: int = WHITENING_IMAGES) -> np.ndarray:
  """A seeded sample of `count` training images (all of them if fewer), in their stored order."""
  if len(images) <= count:
    return np.asarray(images)
  return np.asarray(images[np.sort(np.random.default_rng([seed, 3]).choice(len(images), count,
                                                                            replace=False))])


class PatchWhitening(keras.layers.Layer):
  """A valid k x k convolution with fixed whitening filters and a trainable bias."""

  def build(self, input_shape):
    channels = input_shape[-1]
    width = 2 * channels * WHITENING_KERNEL ** 2
    self.kernel = self.add_weight(shape=(WHITENING_KERNEL, WHITENING_KERNEL, channels, width),
                                  name='whitening', initializer='zeros', trainable=False)
    self.bias = self.add_weight(shape=(width,), name='bias', initializer='zeros')

  def fit(self, normalized_images) -> None:
    """Sets the filters from images already normalised as the network's inputs are."""
    filters = whitening_kernel(image_patches(normalized_images))
    self.kernel.assign(filters.reshape(self.kernel.shape))

  def call(self, inputs):
    return tf.nn.conv2d(inputs, tf.cast(self.kernel, inputs.dtype), 1, 'VALID') + tf.cast(
        self.bias, inputs.dtype)


class ConvGroup(keras.layers.Layer):
  """conv3x3 - max-pool 2 - BN - GELU - conv3x3 - BN - GELU."""

  def __init__(self, filters, norm_tasks, **kwargs):
    super().__init__(**kwargs)
    self.conv1, self.conv2 = (
        keras.layers.Conv2D(filters, 3, padding='same', use_bias=False,
                            kernel_initializer=DiracInitializer()) for _ in range(2))
    self.norm1, self.norm2 = (TaskBatchNorm(norm_tasks, momentum=NORM_MOMENTUM, scale=False)
                              for _ in range(2))

  def call(self, inputs, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    outputs = tf.nn.max_pool2d(self.conv1(inputs), 2, 2, 'VALID')
    outputs = tf.nn.gelu(self.norm1(outputs, training=training, task=task,
                                    update_stats=update_stats), approximate=False)
    outputs = self.norm2(self.conv2(outputs), training=training, task=task,
                         update_stats=update_stats)
    return tf.nn.gelu(outputs, approximate=False)


class FastNet(Trunk):
  """The airbench94 trunk, global max pooling and a linear class head."""

  def __init__(self, config: FastNetConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.whitening = PatchWhitening(name='whitening')
    self.groups = [ConvGroup(filters, config.norm_tasks, name=f'group{index}')
                   for index, filters in enumerate(config.widths)]
    # float32 logits under mixed precision, as the Wide ResNet's.
    self.class_head = keras.layers.Dense(
        config.num_classes, name='class_head', dtype='float32',
        kernel_initializer=keras.initializers.VarianceScaling(1 / 3, 'fan_in', 'uniform'))

  def features(self, images, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    """Penultimate features of images in [0, 1], scaled by 1/9 (airbench's logit scale, applied
    before the head so that feature scores and the head agree)."""
    outputs = tf.nn.gelu(self.whitening(self.normalize(images)), approximate=False)
    for group in self.groups:
      outputs = group(outputs, training=training, task=task, update_stats=update_stats)
    return tf.reduce_max(outputs, axis=[1, 2]) * FEATURE_SCALE


def build_fast_net(config: FastNetConfig, image_shape, mean, std,
                   whitening_images=None) -> FastNet:
  """A built FastNet for images of `image_shape` (H, W, C); `whitening_images` (uint8 [N, H, W,
  C], a new model's training images) fit the whitening filters, which a restored model reads
  from its checkpoint instead."""
  if min(image_shape[:2]) < MIN_SIDE:
    raise UsageError(f'{image_shape[0]}x{image_shape[1]} images are too small for --network=fast: '
                     f'its whitening and three poolings need at least {MIN_SIDE}x{MIN_SIDE}; use '
                     '--network=wide_resnet or larger images')
  model = FastNet(config, name='fast_net')
  model.build_normalization(mean, std)
  model(tf.zeros((1, *image_shape)))
  if whitening_images is not None:
    model.whitening.fit(model.normalize(tf.cast(whitening_images, tf.float32) / 255.0))
  return model
