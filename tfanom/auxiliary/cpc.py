"""Contrastive predictive coding (van den Oord et al. 2018) as adapted in paper Appendix B.

The image is cut into an overlapping grid of patches; the trunk's stem and first three groups
encode each patch into a vector (`WideResNet.encode_patches`). A causal context network over the
rows of encodings summarises every row and the rows above it, and one linear head per step k
predicts the encodings k rows below. InfoNCE scores each prediction against every patch of the
same image: batch normalisation would let the network tell patches of different images apart
trivially (Appendix B), so no negative comes from another image.
"""

import keras
import tensorflow as tf

from tfanom.errors import UsageError
from tfanom.models.trunk import checkpoint_variables

CONTEXT_KERNEL = (2, 3)  # rows (this one and the one above), columns (centred)
CONTEXT_LAYERS = 2
# Scores are cosine similarities over a temperature. The original's raw dot products diverge here
# within a few steps at lambda = 10: the trunk can sharpen them by scaling its encodings up.
TEMPERATURE = 0.1


def default_patch_size(side: int) -> int:
  """A quarter of the image side: 8 for 32x32 images, 56 for 224x224 crops."""
  return max(side // 4, 1)


def grid_size(side: int, patch_size: int, stride: int) -> int:
  return (side - patch_size) // stride + 1


def encoder_output_side(patch_size: int, stem: str) -> int:
  """Side of the last feature map `encode_patches` makes from a square patch."""
  halve = lambda side: (side + 1) // 2  # noqa: E731  # a stride-2 layer with 'same' output size
  side = patch_size
  if stem == 'imagenet_maxpool':
    side = halve(halve(side))  # the 7x7/2 convolution, then the 3x3/2 max pooling
  elif stem == 'imagenet_avgpool':
    side //= 2
  return halve(halve(side))  # the first blocks of groups 2 and 3 stride by 2


def extract_patches(images, patch_size: int, stride: int):
  """[B, H, W, C] -> [B, G, G, patch_size, patch_size, C]."""
  channels = images.shape[-1]
  patches = tf.image.extract_patches(images, sizes=[1, patch_size, patch_size, 1],
                                     strides=[1, stride, stride, 1], rates=[1, 1, 1, 1],
                                     padding='VALID')
  shape = tf.shape(patches)
  return tf.reshape(patches, [shape[0], shape[1], shape[2], patch_size, patch_size, channels])


def info_nce(predictions, encodings, step: int):
  """InfoNCE of predictions `step` rows ahead, each against every patch of its own image.

  predictions: [B, G - step, G, D] (made from the context of rows 0..G-step-1);
  encodings: [B, G, G, D]. Returns per-prediction losses [B, (G - step) * G] and whether the true
  patch scored highest.
  """
  grid = tf.shape(encodings)[1]
  depth = encodings.shape[-1]
  batch = tf.shape(encodings)[0]
  queries = tf.math.l2_normalize(tf.reshape(predictions, [batch, -1, depth]), -1)
  keys = tf.math.l2_normalize(tf.reshape(encodings, [batch, -1, depth]), -1)
  scores = tf.einsum('bqd,bkd->bqk', queries, keys) / TEMPERATURE  # [B, (G - step) * G, G * G]
  # The prediction for (row, column) targets the patch (row + step, column).
  targets = tf.range(tf.shape(queries)[1], dtype=tf.int64) + tf.cast(step * grid, tf.int64)
  labels = tf.broadcast_to(targets, tf.shape(scores)[:2])
  losses = keras.losses.sparse_categorical_crossentropy(labels, scores, from_logits=True)
  return losses, tf.argmax(scores, -1) == labels


class CPCTask:
  """Predicts the encodings of patches below from a causal context of the rows above."""
  name = 'cpc'

  def __init__(self, patch_size: int | None = None, patch_stride: int | None = None,
               steps: int = 3):
    self.patch_size, self.patch_stride, self.steps = patch_size, patch_stride, steps
    self.context = []
    self.heads = []
    self.grid = None

  def build(self, model, image_shape):
    side = image_shape[0]
    if image_shape[0] != image_shape[1]:
      raise UsageError(f'--aux=cpc needs square images, not {image_shape[0]}x{image_shape[1]}')
    self.patch_size = self.patch_size or default_patch_size(side)
    self.patch_stride = self.patch_stride or max(self.patch_size // 2, 1)
    size, stride = self.patch_size, self.patch_stride
    if not 0 < size <= side or stride <= 0 or (side - size) % stride:
      raise UsageError(
          f'--cpc_patch_size={size} --cpc_patch_stride={stride} do not tile {side}x{side} images: '
          'the patch must fit and (image side - patch size) be a multiple of the stride (e.g. '
          f'--cpc_patch_size={default_patch_size(side)} '
          f'--cpc_patch_stride={max(default_patch_size(side) // 2, 1)})')
    self.grid = grid_size(side, size, stride)
    if not 1 <= self.steps < self.grid:
      raise UsageError(f'--cpc_steps={self.steps} does not fit the {self.grid}x{self.grid} grid of '
                       f'patches: predict 1 to {self.grid - 1} rows ahead, or use smaller patches')
    encoded_side = encoder_output_side(size, model.config.stem)
    if encoded_side < 2:
      raise UsageError(
          f'--cpc_patch_size={size} is too small for the three-group patch encoder of '
          f'--stem={model.config.stem}: it shrinks a patch to {encoded_side}x{encoded_side}, too '
          'little for its 3x3 convolutions; use larger patches or --aux=rotation')
    depth = model.class_head.kernel.shape[0]
    self.context = [keras.layers.Conv2D(depth, CONTEXT_KERNEL, padding='valid',
                                        name=f'cpc_context{i}') for i in range(CONTEXT_LAYERS)]
    self.heads = [keras.layers.Dense(depth, use_bias=False, name=f'cpc_predict{k + 1}')
                  for k in range(self.steps)]
    for layer in self.context:
      layer.build((None, self.grid + CONTEXT_KERNEL[0] - 1, self.grid + CONTEXT_KERNEL[1] - 1,
                   depth))
    for head in self.heads:
      head.build((None, depth))

  @property
  def loss_terms_per_image(self):
    return self.grid * sum(self.grid - k for k in range(1, self.steps + 1))

  @property
  def trainable_variables(self):
    return [v for layer in self.context + self.heads for v in layer.trainable_variables]

  @property
  def checkpoint_variables(self):
    return [v for layer in self.context + self.heads for v in checkpoint_variables(layer)]

  def train_variables(self, model, norm_task):
    encoder = {id(v) for layer in model.patch_encoder_layers() for v in layer.variables}
    return ([v for v in model.trunk_variables(norm_task) if id(v) in encoder]
            + self.trainable_variables)

  def encode(self, model, images, training=False, norm_task=0, update_stats=True):
    """The encodings of every patch of every image: [B, G, G, D]."""
    patches = extract_patches(images, self.patch_size, self.patch_stride)
    batch = tf.shape(images)[0]
    flat = tf.reshape(patches, [-1, self.patch_size, self.patch_size, images.shape[-1]])
    encodings = model.encode_patches(flat, training=training, task=norm_task,
                                     update_stats=update_stats)
    return tf.reshape(encodings, [batch, self.grid, self.grid, encodings.shape[-1]])

  def contexts(self, encodings):
    """Causal context at every grid position: it sees that patch's row and the rows above."""
    rows, columns = CONTEXT_KERNEL
    outputs = encodings
    for i, layer in enumerate(self.context):
      padded = tf.pad(outputs, [[0, 0], [rows - 1, 0], [columns // 2, columns // 2], [0, 0]])
      outputs = layer(padded)
      if i < len(self.context) - 1:
        outputs = tf.nn.relu(outputs)
    return encodings + outputs

  def loss(self, model, images, training=False, norm_task=0, update_stats=True):
    encodings = self.encode(model, images, training, norm_task, update_stats)
    contexts = self.contexts(encodings)
    losses, hits = [], []
    for step, head in enumerate(self.heads, start=1):
      step_losses, step_hits = info_nce(head(contexts[:, :self.grid - step]), encodings, step)
      losses.append(step_losses)
      hits.append(step_hits)
    return tf.reshape(tf.concat(losses, 1), [-1]), tf.reshape(tf.concat(hits, 1), [-1])
