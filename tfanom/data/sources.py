"""Where labelled images come from: the shipped `digits` set, TFDS datasets, and image folders.

Every source returns whole splits as uint8 arrays in memory; the hold-out split and the input
pipelines (`holdout.py`, `pipeline.py`) work on those arrays.
"""

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow as tf
from absl import logging

from tfanom.data.imagenet import load_imagenet
from tfanom.errors import UsageError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


# TensorFlow can use a buffer in place only at this alignment (Eigen's, with AVX-512).
TENSOR_ALIGNMENT = 64


def aligned_empty(shape, dtype) -> np.ndarray:
  """An uninitialised C-contiguous array whose buffer TensorFlow can share without a copy."""
  dtype = np.dtype(dtype)
  size = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(size + TENSOR_ALIGNMENT, np.uint8)
  start = -raw.ctypes.data % TENSOR_ALIGNMENT
  return raw[start:start + size].view(dtype).reshape(shape)


@dataclasses.dataclass(frozen=True)
class LabelledImages:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int64 [N], indices into Source.class_names

  def __len__(self):
    return len(self.labels)

  def select(self, mask: np.ndarray) -> 'LabelledImages':
    """The examples where `mask` is true, copied into aligned arrays.

    This is the one copy of the training images a run makes: the input pipeline shares these
    buffers with TensorFlow instead of copying them again (`pipeline.shared_tensor`).
    """
    indices = np.flatnonzero(mask)
    images = aligned_empty((len(indices), *self.images.shape[1:]), self.images.dtype)
    # mode='clip' writes straight into `out`; the default mode first fills a temporary copy.
    np.take(self.images, indices, axis=0, out=images, mode='clip')
    labels = aligned_empty(len(indices), self.labels.dtype)
    np.take(self.labels, indices, out=labels, mode='clip')
    return LabelledImages(images, labels)


@dataclasses.dataclass(frozen=True)
class Source:
  name: str
  class_names: tuple[str, ...]
  train: LabelledImages
  test: LabelledImages
  class_ids: tuple[str, ...] = ()  # other names of the classes, in order (ImageNet's WordNet ids)

  @property
  def image_shape(self):
    return self.train.images.shape[1:]


# Test split fraction and seed for `digits` are fixed so that every run, whatever its --seed, is
# evaluated on the same examples.
_DIGITS_TEST_FRACTION = 0.25
_DIGITS_SPLIT_SEED = 0
_DIGITS_SIZE = 32


def load_digits() -> Source:
  """scikit-learn's 8x8 `digits` (shipped in this package), resized to 32x32 so the CIFAR-style
  network and the rotation task apply unchanged."""
  with np.load(pathlib.Path(__file__).with_name('digits.npz')) as archive:
    images, labels = archive['images'], archive['labels'].astype(np.int64)
  # Bilinear upsampling of 0..16 intensities rescaled to the full uint8 range.
  upsampled = tf.image.resize(images[..., None].astype(np.float32) * (255.0 / 16.0),
                              (_DIGITS_SIZE, _DIGITS_SIZE), method='bilinear')
  images = np.clip(np.round(upsampled.numpy()), 0, 255).astype(np.uint8)
  test_mask = stratified_mask(labels, _DIGITS_TEST_FRACTION, _DIGITS_SPLIT_SEED)
  return Source(
      name='digits',
      class_names=tuple(str(d) for d in range(10)),
      train=LabelledImages(images, labels).select(~test_mask),
      test=LabelledImages(images, labels).select(test_mask))


def stratified_mask(labels, fraction, seed):
  """A boolean mask selecting `fraction` of each class, chosen by a seeded permutation."""
  rng = np.random.default_rng(seed)
  mask = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    chosen = rng.permutation(members)[:int(round(fraction * len(members)))]
    mask[chosen] = True
  return mask


# name -> (TFDS name, train split, test split)
TFDS_SOURCES = {
    'mnist': ('mnist', 'train', 'test'),
    'cifar10': ('cifar10', 'train', 'test'),
    # STL-10's `unlabelled` split has no classes; the hold-out protocol uses the labelled ones.
    'stl10': ('stl10', 'train', 'test'),
}


def load_tfds(name: str, data_dir: str | None) -> Source:
  """A TFDS dataset already prepared under `data_dir` (nothing is downloaded)."""
  import tensorflow_datasets as tfds  # Imported here: it is slow and only these sources need it.
  tfds_name, train_split, test_split = TFDS_SOURCES[name]
  how_to = (f'prepare it on a machine with internet access with `tfds build {tfds_name} '
            f'--data_dir=DIR`, copy DIR here and pass --data_dir=DIR')
  if data_dir is not None and not os.path.isdir(data_dir):
    raise UsageError(f'--data_dir={data_dir} does not exist: {how_to}')
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  try:
    # Read in batches: batch_size=-1 would need the split's size from metadata, which
    # tfds.testing.mock_data does not provide.
    splits = {split: [np.concatenate(parts) for parts in zip(*tfds.as_numpy(
                  builder.as_dataset(split=split, as_supervised=True).batch(4096)))]
              for split in (train_split, test_split)}
  except (AssertionError, FileNotFoundError, tf.errors.NotFoundError) as error:
    raise UsageError(f'{tfds_name} is not prepared in {builder.data_dir}: {how_to}') from error
  class_names = tuple(builder.info.features['label'].names)
  train, test = ([LabelledImages(np.asarray(images, np.uint8), np.asarray(labels, np.int64))
                  for images, labels in (splits[train_split], splits[test_split])])
  return Source(name=name, class_names=class_names, train=train, test=test)


def list_image_folder(split_dir: pathlib.Path, class_names=None):
  """Files of an ImageFolder-style split (`split_dir/<class>/*`), sorted, with class indices.

  `class_names` fixes the classes (and their order); by default every sub-folder is a class.
  """
  if class_names is None:
    class_names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
  files, labels = [], []
  for index, name in enumerate(class_names):
    class_dir = split_dir / name
    if not class_dir.is_dir():
      raise UsageError(f'{split_dir} has no folder for class {name!r}: every split needs one '
                       'sub-folder per class')
    members = sorted(str(p) for p in class_dir.iterdir()
                     if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not members:
      raise UsageError(f'{class_dir} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    files += members
    labels += [index] * len(members)
  return tuple(class_names), files, np.asarray(labels, np.int64)


def decode_images(files, image_size: int, channels: int = 3, skip_corrupt: bool = False):
  """Decodes and resizes (shorter side to `image_size`, centre crop) a list of image files.

  Returns the images and the positions in `files` they come from: all of them, unless
  `skip_corrupt` drops unreadable files (with a warning that counts them) instead of failing.
  """

  def decode(path, position):
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    return resize_and_center_crop(image, image_size), position

  dataset = tf.data.Dataset.from_tensor_slices((files, tf.range(len(files)))).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if skip_corrupt:
    dataset = dataset.ignore_errors()
  images = np.empty((len(files), image_size, image_size, channels), np.uint8)
  kept = np.empty(len(files), np.int64)
  count = 0
  try:
    for batch, positions in dataset.batch(256).as_numpy_iterator():
      images[count:count + len(batch)] = batch
      kept[count:count + len(batch)] = positions
      count += len(batch)
  except tf.errors.InvalidArgumentError:
    raise UsageError(f'{first_undecodable(files[count:])} is not a readable image: remove or '
                     'replace it, or pass --skip_corrupt') from None
  warn_skipped(len(files) - count, [files[i] for i in sorted(set(range(len(files)))
                                                             - set(kept[:count].tolist()))])
  return images[:count], kept[:count]


def warn_skipped(skipped: int, examples=()):
  if skipped:
    shown = ', '.join(map(str, list(examples)[:3]))
    logging.warning('--skip_corrupt: skipped %d unreadable image%s%s', skipped,
                    's' if skipped > 1 else '', f' ({shown}{", ..." if skipped > 3 else ""})'
                    if shown else '')


def first_undecodable(files):
  for path in files:
    try:
      tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    except tf.errors.InvalidArgumentError:
      return path
  return files[0]


def resize_and_center_crop(image, size: int):
  """Shorter side to `size` (bilinear, antialiased), then the central size x size square."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  scale = size / tf.cast(tf.minimum(height, width), tf.float32)
  new_height = tf.cast(tf.math.ceil(tf.cast(height, tf.float32) * scale), tf.int32)
  new_width = tf.cast(tf.math.ceil(tf.cast(width, tf.float32) * scale), tf.int32)
  resized = tf.image.resize(image, (tf.maximum(new_height, size), tf.maximum(new_width, size)),
                            antialias=True)
  cropped = tf.image.resize_with_crop_or_pad(resized, size, size)
  return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)


def load_folder(root: str | None, image_size: int, skip_corrupt: bool = False) -> Source:
  """Any user data in ImageFolder layout: `root/train/<class>/*` and `root/test/<class>/*`."""
  layout = 'root/train/<class>/*.jpg and root/test/<class>/*.jpg'
  if root is None:
    raise UsageError(f'--dataset=folder needs --data_dir=ROOT laid out as {layout}')
  root_path = pathlib.Path(root)
  for split in ('train', 'test'):
    if not (root_path / split).is_dir():
      raise UsageError(f'--data_dir={root} has no {split}/ folder: lay it out as {layout}')
  class_names, train_files, train_labels = list_image_folder(root_path / 'train')
  if len(class_names) < 2:
    raise UsageError(f'{root_path / "train"} must hold at least two class folders')
  _, test_files, test_labels = list_image_folder(root_path / 'test', class_names)

  def split(files, labels):
    images, kept = decode_images(files, image_size, skip_corrupt=skip_corrupt)
    return LabelledImages(images, labels[kept])

  return Source(name='folder', class_names=class_names, train=split(train_files, train_labels),
                test=split(test_files, test_labels))


DATASETS = ('digits', *TFDS_SOURCES, 'folder')


def load_source(name: str, data_dir: str | None = None, image_size: int = 32, members=(),
                cache_dir: str | None = None, skip_corrupt: bool = False) -> Source:
  """The dataset `name`; `members` and `cache_dir` apply to the ImageNet subsets alone,
  `skip_corrupt` to the image files of folders and ImageNet."""
  if name.startswith('imagenet_'):
    return load_imagenet(name, data_dir, image_size, members, cache_dir, skip_corrupt)
  if name == 'digits':
    return load_digits()
  if name in TFDS_SOURCES:
    return load_tfds(name, data_dir)
  if name == 'folder':
    return load_folder(data_dir, image_size, skip_corrupt)
  raise UsageError(f'--dataset={name} is unknown: choose one of {", ".join(DATASETS)} or an '
                   'ImageNet subset (imagenet_dog, ...)')
