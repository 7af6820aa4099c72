"""Image files: listing an ImageFolder-style split, and the one loop that decodes and resizes them.

Folders and the ImageNet subsets are decoded once into prepared files batch by batch
(`tfanom.data.prepared`), and new images scored by an export in memory (`decode_files`); both
iterate `decoded_batches`.
"""

import collections
import fnmatch
import glob
import io
import os
import pathlib
import warnings
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

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
    warn_text_order(split_dir, class_names)
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


def warn_text_order(split_dir, class_names) -> None:
  """One line when class folders named by numbers (0, 2, 10) take indices in text order (0, 10,
  2), which is not their numeric order: the index of each is said."""
  numbers = all(name.isdecimal() for name in class_names)
  if not numbers or class_names == sorted(class_names, key=int):
    return
  shown = ', '.join(f'{index}={name!r}' for index, name in enumerate(class_names[:12]))
  logging.warning('%s: class folders named by numbers are ordered as text, not as numbers: class '
                  'indices %s%s; --holdout=NAME takes the folder of that name', split_dir, shown,
                  ', ...' if len(class_names) > 12 else '')


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
    facts = image_facts(data)
    return (resize_and_center_crop(decode_upright(data, channels, facts[0]), image_size), tag,
            tf.stack([facts[0] != 1, facts[1] == 16]))

  dataset = encoded.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if skip_corrupt:
    dataset = dataset.ignore_errors()
  done, turned, deep = 0, 0, 0
  try:
    for images, tags, facts in dataset.batch(DECODE_BATCH).prefetch(2).as_numpy_iterator():
      done += len(tags)
      turned += int(facts[:, 0].sum())
      deep += int(facts[:, 1].sum())
      yield images, tags
  except tf.errors.InvalidArgumentError:
    raise UsageError(f'{locate(done)} is not a readable image: remove or replace it, or pass '
                     '--skip_corrupt') from None
  if turned:
    logging.warning('turned %d of %d images upright by their EXIF orientation', turned, done)
  if deep:
    logging.warning('read %d of %d images from PNGs of 16 bits per channel: each value kept its '
                    'high byte (v // 256)', deep, done)


def list_image_files(spec: str, option: str = '--images') -> list[str]:
  """The files of `find_image_files(spec, option)`."""
  return find_image_files(spec, option)[0]


def find_image_files(spec: str, option: str = '--images') -> tuple[list[str], int]:
  """(every file below the folder `spec`, or matching the glob `spec`, sorted; the number of
  hidden files, whose names start with '.', left out of it).

  Files are not filtered by name: whatever does not decode is skipped and counted by the caller.
  Links are followed, but each real folder is read once, so a link back up (a loop) is not followed
  again, and each real file is listed once.
  """
  path = pathlib.Path(spec).expanduser()
  hidden = []
  if path.is_dir():
    files = []
    for folder in _folders_below(str(path), hidden_too=True):
      for entry in _entries(folder):
        if _is_file(entry):
          (hidden if entry.name.startswith('.') else files).append(entry.path)
  elif glob.has_magic(spec):
    parts = pathlib.PurePath(os.path.expanduser(spec)).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    files = [p for p in _glob(os.path.join(*parts[:fixed]) if fixed else '', parts[fixed:], hidden)
             if os.path.isfile(p)]
  elif path.is_file():
    files = [str(path)]
  else:
    raise UsageError(f'{option}={spec} does not exist: give a folder of images or a glob such as '
                     '"photos/*.jpg"')
  files = _each_real_file_once(files)
  if not files:
    raise UsageError(f'{option}={spec} holds no files{" but hidden ones" if hidden else ""}: give '
                     'a folder of images or a glob that matches some')
  return files, len(_each_real_file_once(hidden))


def input_root(spec: str) -> str:
  """The folder or file that `spec` (a folder, file or glob) reads below."""
  if not glob.has_magic(spec):
    return os.path.expanduser(spec)
  parts = pathlib.PurePath(os.path.expanduser(spec)).parts
  fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
  return os.path.join(*parts[:fixed]) if fixed else '.'


def _entries(folder: str) -> list:
  try:
    with os.scandir(folder or '.') as entries:
      return sorted(entries, key=lambda entry: entry.name)
  except OSError:
    return []


def _is_file(entry) -> bool:
  try:
    return entry.is_file()
  except OSError:
    return False


def _folders_below(start: str, hidden_too: bool) -> Iterator[str]:
  """`start` and every folder below it, links followed, each real folder once (no loops)."""
  seen = set()
  stack = [start]
  while stack:
    folder = stack.pop()
    try:
      info = os.stat(folder or '.')
    except OSError:
      continue
    if (info.st_dev, info.st_ino) in seen:
      continue
    seen.add((info.st_dev, info.st_ino))
    yield folder
    for entry in reversed(_entries(folder)):
      try:
        is_dir = entry.is_dir()
      except OSError:
        continue
      if is_dir and (hidden_too or not entry.name.startswith('.')):
        stack.append(os.path.join(folder, entry.name))


def _glob(base: str, parts, hidden: list) -> Iterator[str]:
  """The paths below `base` that match the components `parts`, as `glob.glob(recursive=True)`
  matches them (`*` skips hidden names, `**` any depth), but reading each real folder once per
  `**`; the hidden files the last component would match are appended to `hidden`."""
  if not parts:
    yield base
    return
  head, rest = parts[0], parts[1:]
  if head == '**':
    rest = rest or ('*',)  # a last `**` matches the files at any depth
    for folder in _folders_below(base, hidden_too=False):
      yield from _glob(folder, rest, hidden)
  elif glob.has_magic(head):
    for entry in _entries(base):
      if not fnmatch.fnmatchcase(entry.name, head):
        continue
      if entry.name.startswith('.') and not head.startswith('.'):
        if not rest and _is_file(entry):
          hidden.append(entry.path)
        continue
      yield from _glob(os.path.join(base, entry.name), rest, hidden)
  elif os.path.lexists(os.path.join(base, head)):
    yield from _glob(os.path.join(base, head), rest, hidden)


def _each_real_file_once(files: list[str]) -> list[str]:
  """`files`, sorted, with each real file once: under its own name rather than through a link."""
  seen, kept = set(), []
  for path in sorted(files, key=lambda p: (os.path.realpath(p) != os.path.abspath(p), p)):
    try:
      info = os.stat(path)
    except OSError:
      kept.append(path)  # named and skipped as unreadable later
      continue
    if (info.st_dev, info.st_ino) not in seen:
      seen.add((info.st_dev, info.st_ino))
      kept.append(path)
  return sorted(kept)


def utf8_name(path: str) -> bool:
  """Whether `path` can be written as UTF-8: a name that is not (bytes kept by Python as
  surrogates) cannot go into a CSV or onto a terminal, and is shown by its repr instead."""
  try:
    path.encode('utf-8')
    return True
  except UnicodeEncodeError:
    return False


def pixel_count(path: str) -> int | None:
  """Width x height from the image's header (nothing decoded); None for what PIL cannot open,
  which decoding then judges."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      with Image.open(path) as image:
        return image.width * image.height
  except Image.DecompressionBombError:
    # PIL refuses to open more than twice MAX_IMAGE_PIXELS: at least that many.
    return 2 * Image.MAX_IMAGE_PIXELS + 1
  except Exception:  # pylint: disable=broad-except  (any unreadable file: decoding names it)
    return None


def too_large(files, max_megapixels: float) -> dict[str, int]:
  """{path: pixel count} of the files above `max_megapixels` million pixels, read from their
  headers: decoding takes about 25 bytes a pixel, so these are skipped unread."""
  limit = max_megapixels * 1e6
  return {path: pixels for path in files
          if (pixels := pixel_count(path)) is not None and pixels > limit}


def decode_files(files, image_size: int, channels: int) -> Iterator:
  """(uint8 images [B, S, S, C], positions in `files`) batches; unreadable files are left out."""
  if not files:
    return iter(())
  return decoded_batches(_read(files), image_size, channels, True, None)


def _read(files) -> tf.data.Dataset:
  """(file bytes, position in `files`) pairs."""
  # As bytes, so that a name that is not UTF-8 is read as any other.
  names = [os.fsencode(path) for path in files]
  return tf.data.Dataset.from_tensor_slices((names, tf.range(len(files)))).map(
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
      tf.io.decode_image(tf.io.read_file(os.fsencode(path)), expand_animations=False)
    except tf.errors.InvalidArgumentError:
      return path
  return files[0]


def decode_image(data, channels: int):
  """Any image TensorFlow decodes (JPEG, PNG, GIF's first frame, BMP, WebP) as uint8 with
  `channels`, turned upright as its EXIF orientation says (TensorFlow's decoders ignore it; phone
  cameras store pixels as the sensor read them and tag the rotation).

  The format is read from the content, whatever the file's suffix (a PNG named .JPEG). Grey, CMYK
  and RGBA files become RGB (the alpha channel dropped); for one channel, the RGB image's luma. GIF
  and BMP cannot be decoded to one channel directly, so every format goes through RGB. PNGs of 16
  bits per channel keep the high byte of each value.
  """
  return decode_upright(data, channels, image_facts(data)[0])


def decode_upright(data, channels: int, orientation):
  """`decode_image` for an image of known EXIF `orientation`."""
  image = upright(tf.io.decode_image(data, channels=3, expand_animations=False), orientation)
  if channels == 1:
    image = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
  return image


def image_facts(data):
  """[EXIF orientation, bits per channel of a PNG (8 for other formats)] of an encoded image."""
  facts = tf.numpy_function(header_facts, [data], tf.int32, stateful=False)
  facts.set_shape([2])
  return facts


ORIENTATION_TAG = 0x0112
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_BIT_DEPTH = 24  # the byte after the signature, IHDR's length and type, width and height


def header_facts(data) -> np.ndarray:
  """`image_facts` of the bytes, from the header (numpy_function passes them as a 0-d array)."""
  data = np.asarray(data).item()
  bits = data[PNG_BIT_DEPTH] if data[:8] == PNG_SIGNATURE and len(data) > PNG_BIT_DEPTH else 8
  return np.array([exif_orientation(data), bits], np.int32)


def exif_orientation(data: bytes) -> int:
  """The EXIF orientation (1 to 8; 1 is upright) of an encoded image, from its header."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      with Image.open(io.BytesIO(data)) as image:
        # From the header only: a PNG's getexif() decodes the whole image when it has no EXIF
        # (8.8 ms for a 2000 x 2000 PNG, against 0.06 ms this way).
        exif = Image.Exif()
        exif.load(image.info.get('exif', b''))
        orientation = exif.get(ORIENTATION_TAG, 1)
  except Exception:  # pylint: disable=broad-except  (no header PIL reads: TensorFlow judges it)
    orientation = 1
  return orientation if orientation in range(1, 9) else 1


def upright(image, orientation):
  """`image` [H, W, C] as shown upright under EXIF `orientation`, as PIL's exif_transpose."""
  transposed = lambda: tf.transpose(image, (1, 0, 2))  # noqa: E731
  return tf.switch_case(orientation - 1, [
      lambda: image,
      lambda: image[:, ::-1],  # 2: mirrored
      lambda: image[::-1, ::-1],  # 3: upside down
      lambda: image[::-1],  # 4: mirrored upside down
      transposed,  # 5
      lambda: tf.image.rot90(image, 3),  # 6: stored turned a quarter counter-clockwise
      lambda: transposed()[::-1, ::-1],  # 7
      lambda: tf.image.rot90(image, 1),  # 8
  ])


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
