"""The paper's ILSVRC2012 subsets (Table 8) and any subset a user chooses by WordNet id.

The training set of a subset is its members' ILSVRC2012 training images; its test set is their 50
validation images each. Images are read from an ILSVRC2012 folder (`train/<wnid>/*.JPEG`,
`val/<wnid>/*.JPEG`) or from TFDS's prepared `imagenet2012`, resized as Appendix A says (shorter
side to 256, centre crop) and decoded once into an uncompressed cache file. Later runs (other
hold-out classes, other seeds) map that file instead of decoding JPEGs again, and decoding writes
it batch by batch, so a subset never has to fit in memory to be decoded.

config.py reads the subset table, so this module imports TensorFlow only when it loads images.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Callable

import numpy as np

from tfanom.errors import UsageError

# Table 8, in its order: (WordNet id, name). Every id is an ILSVRC2012 class (tests check them
# against the list that tensorflow-datasets ships).
SUBSETS = {
    'dog': (  # hounds
        ('n02091244', 'Ibizan hound'), ('n02088632', 'bluetick'), ('n02088364', 'beagle'),
        ('n02088094', 'Afghan hound'), ('n02092339', 'Weimaraner'), ('n02091831', 'Saluki'),
        ('n02090379', 'redbone'), ('n02091635', 'otterhound'),
        ('n02091467', 'Norwegian elkhound'), ('n02088238', 'basset hound'),
        ('n02092002', 'Scottish deerhound'), ('n02088466', 'bloodhound')),
    'car': (
        ('n03777568', 'Model T'), ('n04037443', 'race car'), ('n04285008', 'sports car'),
        ('n03770679', 'minivan'), ('n02701002', 'ambulance'), ('n02930766', 'cab'),
        ('n02814533', 'beach wagon'), ('n03594945', 'jeep'), ('n03100240', 'convertible'),
        ('n03670208', 'limo')),
    'snake': (  # colubrids
        ('n01728920', 'ringneck snake'), ('n01739381', 'vine snake'),
        ('n01729322', 'hognose snake'), ('n01728572', 'thunder snake'),
        ('n01735189', 'garter snake'), ('n01734418', 'king snake'), ('n01740131', 'night snake'),
        ('n01729977', 'green snake'), ('n01737021', 'water snake')),
    'spider': (
        ('n01774750', 'tarantula'), ('n01773157', 'Argiope aurantia'),
        ('n01773549', 'barn spider'), ('n01774384', 'black widow'),
        ('n01773797', 'garden spider'), ('n01775062', 'wolf spider')),
    'fungus': (
        ('n13040303', 'stinkhorn'), ('n13054560', 'bolete'), ('n13052670', 'hen-of-the-woods'),
        ('n13044778', 'earthstar'), ('n13037406', 'gyromitra'), ('n12985857', 'coral fungus')),
}

LAYOUT = 'DATA_DIR/train/<wnid>/*.JPEG and DATA_DIR/val/<wnid>/*.JPEG'
SPLIT_FOLDERS = {'train': 'train', 'test': 'val'}
TFDS_SPLITS = {'train': 'train', 'test': 'validation'}
CACHE_FOLDER = 'tfanom_cache'
DECODE_BATCH = 128


def ilsvrc2012_wnids() -> tuple[str, ...]:
  """The 1000 ILSVRC2012 classes in TFDS's label order (the list tensorflow-datasets ships)."""
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=g-import-not-at-top
  with open(imagenet_common.label_names_file()) as handle:
    return tuple(line.strip() for line in handle if line.strip())


def subset_members(dataset: str, members=()) -> tuple[tuple[str, str], ...]:
  """(WordNet id, name) of each member of `dataset` (`imagenet_<subset>` or `imagenet_subset`)."""
  subset = dataset.removeprefix('imagenet_')
  if subset != 'subset':
    if subset not in SUBSETS:
      raise UsageError(f'--dataset={dataset} is unknown: the ImageNet subsets are '
                       f'{", ".join("imagenet_" + s for s in SUBSETS)} and imagenet_subset')
    return SUBSETS[subset]
  members = tuple(members)
  valid = set(ilsvrc2012_wnids())
  unknown = [wnid for wnid in members if wnid not in valid]
  if unknown:
    what = ('is not an ILSVRC2012 WordNet id' if len(unknown) == 1
            else 'are not ILSVRC2012 WordNet ids')
    raise UsageError(f'--members: {", ".join(unknown)} {what}: give ids such as n02091244 (see '
                     'the README, "Benchmarks")')
  if len(set(members)) != len(members) or len(members) < 2:
    raise UsageError(f'--members={",".join(members)} must name at least two different classes')
  names = {wnid: name for table in SUBSETS.values() for wnid, name in table}
  return tuple((wnid, names.get(wnid, wnid)) for wnid in members)


@dataclasses.dataclass(frozen=True)
class _EncodedSplit:
  """A split's encoded images in a fixed order, with what identifies them for the cache."""
  name: str
  key: str  # changes whenever the images or their labels do
  dataset: Callable  # () -> tf.data.Dataset of (encoded bytes, label)
  locate: Callable[[int], str]  # position of an undecodable image -> how to find it


def _folder_split(split_dir: pathlib.Path, wnids, image_size: int) -> _EncodedSplit:
  from tfanom.data import sources  # pylint: disable=g-import-not-at-top
  missing = [wnid for wnid in wnids if not (split_dir / wnid).is_dir()]
  if missing:
    raise UsageError(f'{split_dir} has no folder for {", ".join(missing)}: lay ILSVRC2012 out as '
                     f'{LAYOUT} (validation images sorted into class folders)')
  _, files, labels = sources.list_image_folder(split_dir, wnids)
  listing = [(os.path.relpath(f, split_dir), os.path.getsize(f)) for f in files]
  key = _digest(['folder', image_size, listing, labels.tolist()])

  def dataset():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.data.Dataset.from_tensor_slices((files, labels)).map(
        lambda path, label: (tf.io.read_file(path), label))

  return _EncodedSplit(split_dir.name, key, dataset,
                       lambda position: sources.first_undecodable(files[position:]))


def _tfds_splits(data_dir: str, wnids, image_size: int) -> dict[str, _EncodedSplit]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  if not builder.is_prepared():
    raise UsageError(f'--data_dir={data_dir} holds neither an ILSVRC2012 folder ({LAYOUT}) nor '
                     'TFDS\'s prepared imagenet2012: see the README, "Benchmarks"')
  all_wnids = list(builder.info.features['label'].names)
  original = tf.constant([all_wnids.index(wnid) for wnid in wnids], tf.int64)

  def split(tfds_split):
    def dataset():
      records = builder.as_dataset(split=tfds_split, shuffle_files=False,
                                   decoders={'image': tfds.decode.SkipDecoding()})
      # The subset's label is the member's position in the subset, -1 for any other class.
      relabelled = records.map(lambda record: (
          record['image'],
          tf.reduce_max(tf.where(record['label'] == original,
                                 tf.range(len(wnids), dtype=tf.int64), -1))))
      return relabelled.filter(lambda image, label: label >= 0)

    key = _digest(['tfds', builder.data_dir, tfds_split, image_size, list(wnids)])
    return _EncodedSplit(tfds_split, key, dataset,
                         lambda position: f'image {position} of the subset in imagenet2012/'
                                          f'{tfds_split} (under {builder.data_dir})')

  return {split_name: split(tfds_split) for split_name, tfds_split in TFDS_SPLITS.items()}


def _digest(payload) -> str:
  return hashlib.sha1(json.dumps(payload).encode()).hexdigest()[:16]


def _decoded(split: _EncodedSplit, cache_dir: pathlib.Path, image_size: int,
             skip_corrupt: bool = False):
  """The split's images (a read-only memory map of the cache) and labels, decoding on first use."""
  # A cache written while skipping unreadable images holds fewer images: it has a name of its own.
  stem = cache_dir / f'{split.name}_{image_size}px_{split.key}{"_skipped" if skip_corrupt else ""}'
  images_path, labels_path = pathlib.Path(f'{stem}.u8'), pathlib.Path(f'{stem}.labels.npy')
  image_bytes = image_size * image_size * 3
  # The labels are written last, so a cache with labels and images of the right size is complete.
  if not (labels_path.exists() and images_path.exists()
          and images_path.stat().st_size == len(np.load(labels_path)) * image_bytes):
    _decode_into(split, images_path, labels_path, image_size, skip_corrupt)
  labels = np.load(labels_path)
  if not len(labels):
    return np.zeros((0, image_size, image_size, 3), np.uint8), labels
  images = np.memmap(images_path, np.uint8, 'r', shape=(len(labels), image_size, image_size, 3))
  return images, labels


def _decode_into(split: _EncodedSplit, images_path, labels_path, image_size, skip_corrupt):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfanom.data import sources  # pylint: disable=g-import-not-at-top

  def decode(encoded, label):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return sources.resize_and_center_crop(image, image_size), label

  decoded = split.dataset().map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if skip_corrupt:
    decoded = decoded.ignore_errors()
  batches = decoded.batch(DECODE_BATCH).prefetch(2)
  partial = images_path.with_name(f'.{images_path.name}.{os.getpid()}.partial')
  labels, written = [], 0
  try:
    images_path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, 'wb') as handle:
      try:
        for images, batch_labels in batches.as_numpy_iterator():
          handle.write(images.tobytes())
          labels.append(batch_labels)
          written += len(batch_labels)
      except tf.errors.InvalidArgumentError:
        raise UsageError(f'{split.locate(written)} is not a readable image: remove or replace '
                         'it, or pass --skip_corrupt') from None
    if skip_corrupt:
      sources.warn_skipped(split.dataset().reduce(0, lambda count, _: count + 1).numpy() - written)
    os.replace(partial, images_path)
    labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
    partial_labels = labels_path.with_name(f'.{labels_path.name}.{os.getpid()}.partial.npy')
    np.save(partial_labels, labels.astype(np.int64))
    os.replace(partial_labels, labels_path)
  except OSError as error:
    raise UsageError(f'cannot write the decoded-image cache in {images_path.parent} ({error}): '
                     'pass --cache_dir=DIR with room for it') from None
  finally:
    partial.unlink(missing_ok=True)


def load_imagenet(dataset: str, data_dir: str | None, image_size: int = 256, members=(),
                  cache_dir: str | None = None, skip_corrupt: bool = False):
  """The subset `dataset` as a Source: classes named as in Table 8, also known by WordNet id."""
  from tfanom.data.sources import LabelledImages, Source  # pylint: disable=g-import-not-at-top
  chosen = subset_members(dataset, members)
  wnids = [wnid for wnid, _ in chosen]
  if data_dir is None or not os.path.isdir(data_dir):
    raise UsageError(f'--dataset={dataset} needs --data_dir=DIR holding ILSVRC2012 as {LAYOUT} '
                     'or TFDS\'s prepared imagenet2012'
                     + ('' if data_dir is None else f': {data_dir} does not exist'))
  root = pathlib.Path(data_dir)
  if (root / 'train').is_dir():
    splits = {split: _folder_split(root / folder, wnids, image_size)
              for split, folder in SPLIT_FOLDERS.items()}
  else:
    splits = _tfds_splits(data_dir, wnids, image_size)
  cache = pathlib.Path(cache_dir) if cache_dir else root / CACHE_FOLDER
  arrays = {}
  for split_name, split in splits.items():
    images, labels = _decoded(split, cache, image_size, skip_corrupt)
    counts = np.bincount(labels, minlength=len(wnids))
    empty = [wnid for wnid, count in zip(wnids, counts) if not count]
    if empty:
      raise UsageError(f'the {split_name} split has no images of {", ".join(empty)} in '
                       f'--data_dir={data_dir}')
    arrays[split_name] = LabelledImages(images, labels)
  return Source(name=dataset, class_names=tuple(name for _, name in chosen),
                class_ids=tuple(wnids), train=arrays['train'], test=arrays['test'])
