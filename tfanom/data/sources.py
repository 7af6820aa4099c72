"""Where labelled images come from: the shipped `digits` set, TFDS datasets, and image folders.

Every source returns whole splits as uint8 arrays: in memory (digits) or memory-mapped from
prepared files (TFDS, folders, ImageNet: `prepared.py`); the hold-out split and the input
pipelines (`holdout.py`, `pipeline.py`) work on those arrays.
"""

import os
import pathlib

import numpy as np
import tensorflow as tf

from tfanom.data.arrays import LabelledImages, Source, stratified_mask
from tfanom.data.decoding import is_image_file, list_image_folder
from tfanom.data.holdout import HoldoutSplit, make_holdout
from tfanom.data.imagenet import load_imagenet
from tfanom.data.prepared import CACHE_FOLDER, EncodedSplit, digest, file_split, prepared
from tfanom.errors import UsageError

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


# name -> (TFDS name, train split, test split)
TFDS_SOURCES = {
    'mnist': ('mnist', 'train', 'test'),
    'cifar10': ('cifar10', 'train', 'test'),
    # STL-10's `unlabelled` split has no classes; the hold-out protocol uses the labelled ones.
    'stl10': ('stl10', 'train', 'test'),
}


def load_tfds(name: str, data_dir: str | None, cache_dir: str | None = None, log=print) -> Source:
  """A TFDS dataset already prepared under `data_dir` (nothing is downloaded).

  Each split is written once into a prepared file (`tfanom.data.prepared`), in `cache_dir` or
  `<TFDS data dir>/tfanom_cache`, and mapped from there by every later run: keyed by the
  dataset's name, version, split and image shape, it is written again whenever one changes.
  """
  import tensorflow_datasets as tfds  # Imported here: it is slow and only these sources need it.
  tfds_name, train_split, test_split = TFDS_SOURCES[name]
  how_to = (f'prepare it on a machine with internet access with `tfds build {tfds_name} '
            f'--data_dir=DIR`, copy DIR here and pass --data_dir=DIR')
  if data_dir is not None and not os.path.isdir(data_dir):
    raise UsageError(f'--data_dir={data_dir} does not exist: {how_to}')
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  not_prepared = f'{tfds_name} is not prepared in {builder.data_dir}: {how_to}'
  cache = (pathlib.Path(cache_dir) if cache_dir
           else pathlib.Path(builder.data_dir_root, CACHE_FOLDER))
  height, width, channels = builder.info.features['image'].shape  # square in every TFDS_SOURCES

  def split(tfds_split):
    def dataset():
      try:
        return builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)
      except (AssertionError, FileNotFoundError) as error:
        raise UsageError(not_prepared) from error

    known = tfds_split in builder.info.splits
    encoded = EncodedSplit(
        f'{tfds_name}_{tfds_split}',
        digest(['tfds', builder.name, str(builder.version), tfds_split, [height, width, channels]]),
        dataset, size=builder.info.splits[tfds_split].num_examples if known else None,
        decoded=True)
    try:
      return LabelledImages(*prepared(encoded, cache, height, channels, log=log))
    except tf.errors.NotFoundError as error:  # a record file missing under a prepared data dir
      raise UsageError(not_prepared) from error

  class_names = tuple(builder.info.features['label'].names)
  return Source(name=name, class_names=class_names, train=split(train_split),
                test=split(test_split))


def load_folder(root: str | None, image_size: int, skip_corrupt: bool = False,
                cache_dir: str | None = None, log=print) -> Source:
  """Any user data in ImageFolder layout: `root/train/<class>/*` and `root/test/<class>/*`.

  Each split is prepared once per image size (`tfanom.data.prepared`), in `cache_dir` or
  `root/tfanom_cache`.
  """
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
  test_only = sorted(p.name for p in (root_path / 'test').iterdir()
                     if p.is_dir() and p.name not in class_names)
  if test_only:
    count = sum(1 for name in test_only for p in (root_path / 'test' / name).iterdir()
                if is_image_file(p))
    raise UsageError(f'{root_path / "test"} has {len(test_only)} class folders that train/ lacks '
                     f'({", ".join(test_only)}; {count} images): a class needs training images, '
                     'so add them to train/ or move these folders out')
  _, test_files, test_labels = list_image_folder(root_path / 'test', class_names)
  cache = pathlib.Path(cache_dir) if cache_dir else root_path / CACHE_FOLDER

  def split(name, files, labels):
    encoded = file_split(name, files, labels, root_path, ['folder', image_size, class_names])
    return LabelledImages(*prepared(encoded, cache, image_size, skip_corrupt=skip_corrupt,
                                    log=log))

  return Source(name='folder', class_names=class_names,
                train=split('train', train_files, train_labels),
                test=split('test', test_files, test_labels))


DATASETS = ('digits', *TFDS_SOURCES, 'folder')


def load_source(name: str, data_dir: str | None = None, image_size: int = 32, members=(),
                cache_dir: str | None = None, skip_corrupt: bool = False, log=print) -> Source:
  """The dataset `name`; `members` applies to the ImageNet subsets alone, `cache_dir` (where
  images are prepared) to every source but digits, and `skip_corrupt` to the image files of
  folders and ImageNet; `log` receives the progress lines of a first preparation."""
  if name.startswith('imagenet_'):
    return load_imagenet(name, data_dir, image_size, members, cache_dir, skip_corrupt, log)
  if name == 'digits':
    return load_digits()
  if name in TFDS_SOURCES:
    return load_tfds(name, data_dir, cache_dir, log)
  if name == 'folder':
    return load_folder(data_dir, image_size, skip_corrupt, cache_dir, log)
  raise UsageError(f'--dataset={name} is unknown: choose one of {", ".join(DATASETS)} or an '
                   'ImageNet subset (imagenet_dog, ...)')


def configured_source(config, log=print) -> Source:
  """The source a resolved `TrainConfig` reads (its dataset, data_dir, image_size, members,
  cache_dir and skip_corrupt)."""
  return load_source(config.dataset, config.data_dir, config.image_size, config.members,
                     config.cache_dir, config.skip_corrupt, log)


def prepare_data(config, log=print) -> Source:
  """Prepares the data a training run of `config` (a `TrainConfig`) reads, without training:
  TFDS datasets, folders and ImageNet subsets are written into their prepared files
  (`prepared.py`)."""
  config = config.resolved()
  source = configured_source(config, log)
  log(f'{config.dataset}: {len(source.train)} training and {len(source.test)} test images of '
      f'{"x".join(map(str, source.image_shape))} ready')
  return source


def load_split(config, log=print) -> HoldoutSplit:
  """The run's hold-out split, built from its data source: training and every later load call
  this. The source itself is not kept: the split holds the only copy of in-memory images (or
  index arrays over prepared files)."""
  return make_holdout(configured_source(config, log), config.holdout, config.validation,
                      config.seed)
