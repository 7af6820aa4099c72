"""Prepared data: a split's images decoded once into an uncompressed file, then read by index.

Folders, TFDS datasets and the ImageNet subsets are prepared the same way: the first run writes a
split batch by batch into `<name>_<size>px_<key>.u8` (uint8 images [N, S, S, C] in C order, no
header) and `.labels.npy` beside it; every later run, seed, hold-out, evaluation and export maps
that file (`np.memmap`, read-only) instead of decoding again, and reads only the pages it touches.
Beside them, `.counts.npy` holds how often each uint8 value occurs per class and channel
(`arrays.value_counts`), so that a hold-out split's channel statistics need not read the images.
The key is a digest of everything the pixels depend on: the file list with each file's size and
modification time (or the TFDS dataset, version and split), the decoding settings and
DECODING_VERSION. A changed source therefore gets a new name and is prepared again, never mixed
with the old one. TFDS's `mnist`, `cifar10` and `stl10` store decoded images: their splits are
written as TFDS reads them (`EncodedSplit.decoded`). A split is written to a temporary name and
renamed into place, so an interrupted preparation leaves nothing behind that a later run would
read.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from tfanom.data.arrays import value_counts
from tfanom.data.decoding import (DECODE_BATCH, decoded_batches, first_undecodable,
                                  warn_skipped)
from tfanom.errors import UsageError
from tfanom.progress import Throttle

CACHE_FOLDER = 'tfanom_cache'
# Part of every key: raise it whenever decoding.py's pixels change (resizing, orientation), so
# that files prepared by the old decoder are not read as if the new one had written them.
DECODING_VERSION = 1


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  """A split's images in a fixed order, with what identifies them for preparation."""
  name: str
  key: str  # changes whenever the images or their labels do
  # () -> tf.data.Dataset of (encoded bytes, label), or with `decoded` of (uint8 image, label)
  # already at the prepared size
  dataset: Callable
  locate: Callable[[int], str] | None = None  # position of an undecodable image -> how to find it
  size: int | None = None  # number of images, when known without reading them (progress lines)
  decoded: bool = False


def digest(payload) -> str:
  return hashlib.sha1(json.dumps([DECODING_VERSION, payload]).encode()).hexdigest()[:16]


def file_split(name: str, files, labels: np.ndarray, root, settings) -> EncodedSplit:
  """A split of image files: keyed by their paths under `root`, sizes, modification times and
  labels, and the decoding `settings`."""
  listing = []
  for path in files:
    stat = os.stat(path)
    listing.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns))
  files, labels = list(files), np.asarray(labels, np.int64)

  def dataset():
    return tf.data.Dataset.from_tensor_slices((files, labels)).map(
        lambda path, label: (tf.io.read_file(path), label))

  return EncodedSplit(name, digest(['files', settings, listing, labels.tolist()]), dataset,
                      lambda position: first_undecodable(files[position:]), len(files))


def prepared(split: EncodedSplit, cache_dir: pathlib.Path, image_size: int, channels: int = 3,
             skip_corrupt: bool = False, log=print):
  """The split's images (a read-only memory map of the prepared file), labels and value counts per
  class and channel, preparing them on first use."""
  # A file written while skipping unreadable images holds fewer images: it has a name of its own.
  stem = cache_dir / (f'{split.name}_{image_size}px{"" if channels == 3 else f"_{channels}ch"}_'
                      f'{split.key}{"_skipped" if skip_corrupt else ""}')
  images_path, labels_path = pathlib.Path(f'{stem}.u8'), pathlib.Path(f'{stem}.labels.npy')
  counts_path = pathlib.Path(f'{stem}.counts.npy')
  image_bytes = image_size * image_size * channels
  # The labels are written last, so labels and images of the right size make a complete file.
  if not (labels_path.exists() and images_path.exists()
          and images_path.stat().st_size == len(np.load(labels_path)) * image_bytes):
    counts_path.unlink(missing_ok=True)  # of images that are decoded again
    _decode_into(split, images_path, labels_path, image_size, channels, skip_corrupt, log)
  labels = np.load(labels_path)
  shape = (len(labels), image_size, image_size, channels)
  images = (np.memmap(images_path, np.uint8, 'r', shape=shape) if len(labels)
            else np.zeros(shape, np.uint8))
  counts = np.load(counts_path) if counts_path.exists() else None
  if counts is None or counts.sum() != images.size:
    # Files prepared before the counts were stored get them on their first use.
    counts = value_counts(images, labels, int(labels.max(initial=-1)) + 1)
    try:
      _save_atomically(counts_path, counts)
    except OSError as error:  # e.g. a read-only copy of prepared files: they stay usable
      logging.warning('cannot store the value counts in %s (%s): every run counts them again',
                      counts_path, error)
  return images, labels, counts


def _save_atomically(path: pathlib.Path, array: np.ndarray) -> None:
  partial = path.with_name(f'.{path.name}.{os.getpid()}.partial.npy')
  try:
    np.save(partial, array)
    os.replace(partial, path)
  finally:
    partial.unlink(missing_ok=True)


def _decode_into(split: EncodedSplit, images_path, labels_path, image_size, channels,
                 skip_corrupt, log):
  partial = images_path.with_name(f'.{images_path.name}.{os.getpid()}.partial')
  labels, written = [], 0
  throttle = Throttle()
  of = f'/{split.size}' if split.size is not None else ''
  try:
    images_path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, 'wb') as handle:
      if split.decoded:
        batches = split.dataset().batch(DECODE_BATCH).prefetch(2).as_numpy_iterator()
      else:
        batches = decoded_batches(split.dataset(), image_size, channels, skip_corrupt,
                                  split.locate)
      for images, batch_labels in batches:
        handle.write(images.tobytes())
        labels.append(batch_labels)
        written += len(batch_labels)
        if throttle.due():
          log(f'preparing {images_path.name}: {written}{of} images written '
              f'({written / max(throttle.elapsed(), 1e-9):.0f} img/s)')
    if skip_corrupt:
      total = (split.size if split.size is not None
               else split.dataset().reduce(0, lambda count, _: count + 1).numpy())
      warn_skipped(total - written)
    os.replace(partial, images_path)
    labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
    _save_atomically(labels_path, labels.astype(np.int64))
    log(f'prepared {written} images in {images_path} ({throttle.elapsed():.0f} s)')
  except OSError as error:
    raise UsageError(f'cannot write the prepared images in {images_path.parent} ({error}): '
                     'pass --cache_dir=DIR with room for them') from None
  finally:
    partial.unlink(missing_ok=True)
