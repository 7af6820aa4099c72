"""Image files: listing an ImageFolder-style split, and the one loop that decodes and resizes them.

Folders and the ImageNet subsets are decoded once into prepared files batch by batch
(`tfanom.data.prepared`), and new images scored by an export in memory (`decode_files`); both
iterate `decoded_batches`.
"""

import collections
import glob
import os
import pathlib
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
from absl import logging

from tfanom.errors import UsageError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')
# macOS writes a `._<name>` AppleDouble file of metadata beside each file it copies to a volume
# without extended attributes: never an image, whatever its suffix.
APPLEDOUBLE_PREFIX = '._'
DECODE_BATCH = 128


def list_image_folder(split_dir: pathlib.Path, class_names=None):
  """Files of an ImageFolder-style split (`split_dir/<class>/*`), sorted, with class indices.

  `class_names` fixes the classes (and their order); by default every sub-folder is a class.
  """
  if class_names is None:
    class_names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
  files, labels, skipped = [], [], []
  for index, name in enumerate(class_names):
    class_dir = split_dir / name
    if not class_dir.is_dir():
      raise UsageError(f'{split_dir} has no folder for class {name!r}: every split needs one '
                       'sub-folder per class')
    members = []
    for path in class_dir.iterdir():
      if is_image_file(path):
        members.append(str(path))
      elif path.is_file() and (path.name.startswith(APPLEDOUBLE_PREFIX)
                               or not path.name.startswith('.')):
        skipped.append(path)
    if not members:
      raise UsageError(f'{class_dir} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    files += sorted(members)
    labels += [index] * len(members)
  warn_not_images(split_dir, skipped)
  return tuple(class_names), files, np.asarray(labels, np.int64)


def is_image_file(path: pathlib.Path) -> bool:
  """A file of a format `decode_image` reads, by its suffix, other than macOS metadata."""
  return (path.suffix.lower() in IMAGE_EXTENSIONS
          and not path.name.startswith(APPLEDOUBLE_PREFIX))


def warn_not_images(split_dir, skipped) -> None:
  """One line counting the files of a split that are left out: AppleDouble and other formats."""
  if not skipped:
    return
  appledouble = sum(p.name.startswith(APPLEDOUBLE_PREFIX) for p in skipped)
  suffixes = collections.Counter(p.suffix.lower() or '(no suffix)' for p in skipped
                                 if not p.name.startswith(APPLEDOUBLE_PREFIX))
  parts = ([f'{appledouble} macOS AppleDouble ._* file{"s" if appledouble > 1 else ""}']
           if appledouble else [])
  if suffixes:
    count = sum(suffixes.values())
    parts.append(f'{count} file{"s" if count > 1 else ""} of formats not decoded ('
                 + ', '.join(f'{suffix} {n}' for suffix, n in sorted(suffixes.items()))
                 + f'; convert them to one of {", ".join(IMAGE_EXTENSIONS)})')
  logging.warning('%s: skipped %s', split_dir, ' and '.join(parts))


def decoded_batches(encoded: tf.data.Dataset, image_size: int, channels: int,
                    skip_corrupt: bool, locate: Callable[[int], str]) -> Iterator:
  """(uint8 images [B, S, S, C], tags [B]) batches of `encoded`'s (bytes, tag) pairs, in order.

  Each image is decoded, its shorter side resized to `image_size` and its centre cropped. An
  unreadable image ends the loop with a UsageError naming it (`locate(position)` of the first
  image not yet yielded finds it), unless `skip_corrupt` drops it; the caller counts what it got.
  """

  def decode(data, tag):
    return resize_and_center_crop(decode_image(data, channels), image_size), tag

  dataset = encoded.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if skip_corrupt:
    dataset = dataset.ignore_errors()
  done = 0
  try:
    for images, tags in dataset.batch(DECODE_BATCH).prefetch(2).as_numpy_iterator():
      done += len(tags)
      yield images, tags
  except tf.errors.InvalidArgumentError:
    raise UsageError(f'{locate(done)} is not a readable image: remove or replace it, or pass '
                     '--skip_corrupt') from None


def list_image_files(spec: str, option: str = '--images') -> list[str]:
  """Every file below the folder `spec` (recursively), or matching the glob `spec`, sorted.

  Files are not filtered by name: whatever does not decode is skipped and counted by the caller.
  """
  path = pathlib.Path(spec).expanduser()
  if path.is_dir():
    files = [p for p in path.rglob('*') if p.is_file() and not p.name.startswith('.')]
  elif glob.has_magic(spec):
    files = [pathlib.Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)]
    files = [p for p in files if p.is_file()]
  elif path.is_file():
    files = [path]
  else:
    raise UsageError(f'{option}={spec} does not exist: give a folder of images or a glob such as '
                     '"photos/*.jpg"')
  if not files:
    raise UsageError(f'{option}={spec} holds no files: give a folder of images or a glob that '
                     'matches some')
  return sorted(str(p) for p in files)


def decode_files(files, image_size: int, channels: int) -> Iterator:
  """(uint8 images [B, S, S, C], positions in `files`) batches; unreadable files are left out."""
  return decoded_batches(_read(files), image_size, channels, True, None)


def _read(files) -> tf.data.Dataset:
  """(file bytes, position in `files`) pairs."""
  return tf.data.Dataset.from_tensor_slices((list(files), tf.range(len(files)))).map(
      lambda path, position: (tf.io.read_file(path), position))


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


def decode_image(data, channels: int):
  """Any image TensorFlow decodes (JPEG, PNG, GIF's first frame, BMP) as uint8 with `channels`.

  Grey and RGBA files become RGB (the alpha channel dropped); for one channel, the RGB image's
  luma. GIF and BMP cannot be decoded to one channel directly, so every format goes through RGB.
  """
  image = tf.io.decode_image(data, channels=3, expand_animations=False)
  if channels == 1:
    image = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
  return image


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
