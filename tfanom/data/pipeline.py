"""tf.data input pipelines for training and evaluation.

Each training epoch is a pure function of (seed, epoch, start step): a seeded permutation of the
training set and stateless augmentation keyed by the step. A resumed run therefore sees exactly the
batches an uninterrupted one would have, with no shuffle buffer to checkpoint. Images stay uint8
until they reach the training step (`to_unit_range`), which keeps host-to-device copies small.
"""

import numpy as np
import tensorflow as tf

from tfanom.config import check_train_setting
from tfanom.data.holdout import HoldoutSplit
from tfanom.errors import UsageError

CROP_PADDING = 4
PAD_MODES = dict(zeros='CONSTANT', reflect='REFLECT')
# On CIFAR-10's 32x32 images a 16x16 square within the central 21x21 region; other sides scale.
MASK_FRACTION = 16 / 32
MASK_REGION_FRACTION = 21 / 32


def to_unit_range(images):
  """uint8 pixels to float32 in [0, 1], the space the model (and ODIN's step) works in."""
  return tf.cast(images, tf.float32) / 255.0


def row_reader(images):
  """A graph function from indices [n] to those uint8 rows of `images` [n, H, W, C].

  `images` is an array in memory, a prepared file's memory map or an index view of one
  (`arrays.IndexedImages`). NumPy reads the rows when a batch is made, so the dataset's graph
  never holds the images: a captured array is copied into every graph (and every rewrite of it)
  that holds it, which under tf.distribute added 153 MiB for a 132 MiB training set, and a
  prepared file is only read, one batch at a time.
  """
  shape = tuple(images.shape[1:])

  def read(indices):
    return np.asarray(images[indices], np.uint8)

  def rows(indices):
    batch = tf.numpy_function(read, [indices], tf.uint8, stateful=False)
    batch.set_shape(indices.shape.concatenate(shape))
    return batch

  return rows


def random_crop_flip(images, seed, padding=CROP_PADDING, flip=True, size=None, fill='zeros',
                     mirror=None, part=None):
  """Pad by `padding` (`fill`: zeros or reflect), crop a `size` square (default: the image's size)
  at a random offset and, with `flip`, mirror a random half of the batch, or the images where the
  boolean `mirror` [batch] is true.

  Each crop is one slice (a copy of whole rows), which is an order of magnitude faster than
  gathering pixels by index on 224x224 crops and still faster on 32x32 ones; `seed` is a stateless
  seed, shape [2]. `part` = (first row, rows of the whole batch) when `images` are one replica's
  rows of a larger batch: each image then gets the draws it would get in the whole batch.
  """
  height, width = (size, size) if size else (images.shape[1], images.shape[2])
  padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]],
                  mode=PAD_MODES[fill])
  row_seed, col_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  row_offsets = _draws(images, part, row_seed, 0, padded.shape[1] - height + 1, tf.int32)
  col_offsets = _draws(images, part, col_seed, 0, padded.shape[2] - width + 1, tf.int32)
  crop_shape = [height, width, images.shape[3]]
  cropped = tf.map_fn(
      lambda args: tf.slice(args[0], tf.stack([args[1], args[2], 0]), crop_shape),
      (padded, row_offsets, col_offsets), fn_output_signature=images.dtype)
  if not flip:
    return cropped
  if mirror is None:
    mirror = _draws(images, part, flip_seed) < 0.5
  return tf.where(mirror[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


def _draws(images, part, seed, minval=0, maxval=None, dtype=tf.float32):
  """One stateless uniform draw per image: the rows `part` (first, total) of a whole batch's."""
  first, total = part if part is not None else (0, tf.shape(images)[0])
  draws = tf.random.stateless_uniform([total], seed, minval, maxval, dtype)
  first = tf.cast(first, tf.int32)
  return draws[first:first + tf.shape(images)[0]]


def center_crop(images, size=None):
  """The central `size` square of each image of a batch (the whole image without `size`)."""
  if not size:
    return images
  top, left = (images.shape[1] - size) // 2, (images.shape[2] - size) // 2
  return images[:, top:top + size, left:left + size]


def center_mask(images, seed, fill, part=None):
  """Fills a random square of each image, chosen inside the central region, with `fill` [C].

  The square is MASK_FRACTION of the side and lies wholly inside the central MASK_REGION_FRACTION
  of it (16x16 within 21x21 on 32x32 images, Table 7). `part` as for `random_crop_flip`.
  """

  def inside(length, axis_seed):
    mask = int(round(MASK_FRACTION * length))
    region = int(round(MASK_REGION_FRACTION * length))
    start = (length - region) // 2
    offsets = _draws(images, part, axis_seed, start, start + region - mask + 1, tf.int32)
    positions = tf.range(length)[None, :]
    return (positions >= offsets[:, None]) & (positions < offsets[:, None] + mask)

  row_seed, col_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  masked = (inside(images.shape[1], row_seed)[:, :, None]
            & inside(images.shape[2], col_seed)[:, None, :])
  return tf.where(masked[..., None], tf.cast(fill, images.dtype), images)


class InputPipeline:
  """Training and evaluation datasets of one hold-out split.

  Args:
    split: the hold-out split.
    batch_size: global classification batch; every training batch is full (the last partial batch
      of an epoch is left to the next epoch's permutation), every evaluation example is kept.
    aux_batch_size: global batch of unaugmented images for the auxiliary task, or 0 for none.
    augment: one of the choices of TrainConfig.augment. 'center_mask' is Table 7's regulariser:
      crop_flip, then a masked square inside the image centre. 'crop_altflip' is airbench's:
      crops, and each image mirrored in every other epoch (a seeded half of the images in even
      epochs, the other half in odd ones), which sees both orientations of every image within
      two epochs.
    seed: seeds the permutations and the augmentation.
    crop_padding, crop_fill: the padding of crop augmentations and what it holds (PAD_MODES).
    crop_size: the side of the images the model sees: random crops (without padding) in training,
      central crops for evaluation and the auxiliary task. Without it, training crops are taken
      after padding by CROP_PADDING, at the images' own size.
  """

  def __init__(self, split: HoldoutSplit, batch_size: int, aux_batch_size: int = 0,
               augment: str = 'crop_flip', seed: int = 0, crop_size: int | None = None,
               crop_padding: int = CROP_PADDING, crop_fill: str = 'zeros'):
    check_train_setting('augment', augment)
    height, width, channels = split.train.images.shape[1:]
    if crop_size and crop_size > min(height, width):
      raise UsageError(f'--crop_size={crop_size} is larger than the {height}x{width} images of '
                       f'{split.dataset}: use a smaller crop')
    self.crop_size = crop_size
    self.image_shape = (crop_size or height, crop_size or width, channels)
    self.num_train = len(split.train)
    self.steps_per_epoch = self.num_train // batch_size
    if self.steps_per_epoch == 0:
      raise UsageError(f'--batch_size={batch_size} is larger than the {self.num_train} training '
                       'images of this split: use a smaller batch')
    self.batch_size = batch_size
    self.aux_batch_size = aux_batch_size
    self.augment = augment
    self.seed = seed
    self.crop_padding, self.crop_fill = crop_padding, crop_fill
    # crop_altflip: the images mirrored in even epochs (the others in odd ones).
    self._mirrored_first = tf.constant(
        np.random.default_rng([seed, 2]).random(self.num_train) < 0.5)
    # Masked pixels take the training mean, which the model's normalisation maps to zero.
    self._mask_fill = tf.constant(np.round(split.mean * 255.0), tf.uint8)
    # Batches are read from the split's own arrays, not from copies of them.
    self._train_images = row_reader(split.train.images)
    self._train_labels = tf.constant(split.train.labels)
    self._eval_images = row_reader(split.evaluation.images)
    self._eval_labels = tf.constant(split.evaluation.labels)
    self.num_eval = len(split.evaluation)

  def _batched_permutation(self, epoch, stream, batch_size, start_step):
    order = np.random.default_rng([self.seed, epoch, stream]).permutation(self.num_train)
    usable = self.steps_per_epoch * batch_size
    return order[:usable].reshape(self.steps_per_epoch, batch_size)[start_step:]

  def train_dataset(self, epoch: int, start_step: int = 0,
                    context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One epoch of batches from `start_step` on: {'image', 'label'} and, with an auxiliary task,
    'aux_image' (unaugmented, a separate permutation).

    With `context` (`strategy.distribute_datasets_from_function`), the dataset of one input
    pipeline: for each step, one element per replica of that pipeline, in replica order, each that
    replica's consecutive share of the global batch. Only those rows are read, and every image is
    augmented as in the whole batch, so the global batches are the same for any number of
    workers and replicas.
    """
    first, replicas, total = _replicas(context)
    steps = np.arange(start_step, self.steps_per_epoch, dtype=np.int64)
    indices = {'cls': self._batched_permutation(epoch, 0, self.batch_size, start_step)}
    if self.aux_batch_size:
      indices['aux'] = self._batched_permutation(epoch, 1, self.aux_batch_size, start_step)
    for name, batch_indices in indices.items():
      if batch_indices.shape[1] % total:
        raise UsageError(f'--{"aux_" if name == "aux" else ""}batch_size={batch_indices.shape[1]}'
                         f' must be a multiple of the {total} replicas')
      share = batch_indices.shape[1] // total
      indices[name] = batch_indices.reshape(len(steps), total, share)[
          :, first:first + replicas].reshape(len(steps) * replicas, share)
    # The first row of each element in the global batch of its step.
    offsets = np.tile(np.arange(first, first + replicas) * (self.batch_size // total),
                      len(steps))
    epoch_seed = np.int64(self.seed) * 1_000_003 + epoch
    odd_epoch = tf.constant(epoch % 2 == 1)
    dataset = tf.data.Dataset.from_tensor_slices((np.repeat(steps, replicas), offsets, indices))
    dataset = dataset.map(
        lambda step, offset, batch_indices: self._training_batch(
            tf.stack([epoch_seed, step]), odd_epoch, batch_indices, offset),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _without_rewrites_or_autotuning(dataset.prefetch(tf.data.AUTOTUNE))

  @tf.function
  def _training_batch(self, seed, odd_epoch, batch_indices, offset):
    # A tf.function, traced once per pipeline: tf.data traces what it maps for every dataset, and
    # every epoch is a new dataset, so the map only calls this graph (saves ~0.05 s an epoch).
    mirror = tf.not_equal(tf.gather(self._mirrored_first, batch_indices['cls']), odd_epoch)
    image = self._augment(self._train_images(batch_indices['cls']), seed, mirror,
                          (offset, self.batch_size))
    batch = {'image': image, 'label': tf.gather(self._train_labels, batch_indices['cls'])}
    if 'aux' in batch_indices:
      batch['aux_image'] = center_crop(self._train_images(batch_indices['aux']), self.crop_size)
    return batch

  def _augment(self, images, seed, mirror, part):
    if self.augment == 'none':
      return center_crop(images, self.crop_size)
    images = random_crop_flip(images, seed, 0 if self.crop_size else self.crop_padding,
                              flip=self.augment != 'crop', size=self.crop_size,
                              fill=self.crop_fill,
                              mirror=mirror if self.augment == 'crop_altflip' else None,
                              part=part)
    if self.augment == 'center_mask':
      images = center_mask(images, tf.random.experimental.stateless_fold_in(seed, 1),
                           self._mask_fill, part)
    return images

  def eval_dataset(self, batch_size: int | None = None,
                   context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Every evaluation example, in order, as {'image', 'label'}; label < 0 marks an anomaly.

    With `context` and several replicas, each replica gets ceil(batch / replicas) rows of every
    global batch (static shapes), and the last global batch is padded by repeating the last
    example: the gathered results' first `num_eval` rows are every example, in order, and the
    rest is padding to drop. Without, the last batch is partial.
    """
    first, replicas, total = _replicas(context)
    share = -(-(batch_size or self.batch_size) // total)
    starts = np.arange(0, self.num_eval, share * total)
    starts = (starts[:, None] + np.arange(first, first + replicas)[None, :] * share).reshape(-1)

    def batch(start):
      indices = tf.range(start, start + share)
      indices = (tf.minimum(indices, self.num_eval - 1) if total > 1
                 else indices[:tf.maximum(tf.minimum(self.num_eval - start, share), 0)])
      return {'image': center_crop(self._eval_images(indices), self.crop_size),
              'label': tf.gather(self._eval_labels, indices)}

    dataset = tf.data.Dataset.from_tensor_slices(starts).map(
        batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _without_rewrites_or_autotuning(dataset.prefetch(tf.data.AUTOTUNE))


def _replicas(context: tf.distribute.InputContext | None) -> tuple[int, int, int]:
  """The first replica of an input pipeline, its number of replicas, and all replicas."""
  if context is None:
    return 0, 1, 1
  total = context.num_replicas_in_sync
  replicas = total // context.num_input_pipelines
  return context.input_pipeline_id * replicas, replicas, total


def _without_rewrites_or_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """`dataset` without tf.data's static graph rewrites and without its autotuning model.

  A rewrite serialises the dataset's graph and copies every captured tensor into it; this
  pipeline is already parallel and prefetched, so the default rewrites have nothing to add. The autotuning model made deleting an iterator after a training epoch wait
  about 4.5 s in half of the epochs (measured on 2 cores: WRN-16-2 epochs of 6 s, and every epoch
  ends with a deleted iterator). Without it, AUTOTUNE parallelism is the number of cores and the
  prefetch buffer still grows as needed.
  """
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  options.autotune.enabled = False
  return dataset.with_options(options)
