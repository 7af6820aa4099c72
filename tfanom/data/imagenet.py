"""The paper's ILSVRC2012 subsets (Table 8) and any subset a user chooses by WordNet id.

The training set of a subset is its members' ILSVRC2012 training images; its test set is their 50
validation images each. Images are read from an ILSVRC2012 folder (`train/<wnid>/*.JPEG`,
`val/<wnid>/*.JPEG`) or from TFDS's prepared `imagenet2012`, resized as Appendix A says (shorter
side to 256, centre crop) and decoded once into an uncompressed cache file. Later runs (other
hold-out classes, other seeds) map that file instead of decoding JPEGs again, and decoding writes
it batch by batch, so a subset never has to fit in memory to be decoded.

The subsets' members are listed in `subsets.py`.
"""

import os
import pathlib

import numpy as np
import tensorflow as tf

from tfanom.data.arrays import LabelledImages, Source
from tfanom.data.decoding import list_image_folder
from tfanom.data.prepared import CACHE_FOLDER, EncodedSplit, digest, file_split, prepared
from tfanom.data.subsets import subset_members
from tfanom.errors import UsageError

LAYOUT = 'DATA_DIR/train/<wnid>/*.JPEG and DATA_DIR/val/<wnid>/*.JPEG'
SPLIT_FOLDERS = {'train': 'train', 'test': 'val'}
TFDS_SPLITS = {'train': 'train', 'test': 'validation'}


def _folder_split(split_dir: pathlib.Path, wnids, image_size: int) -> EncodedSplit:
  missing = [wnid for wnid in wnids if not (split_dir / wnid).is_dir()]
  if missing:
    raise UsageError(f'{split_dir} has no folder for {", ".join(missing)}: lay ILSVRC2012 out as '
                     f'{LAYOUT} (validation images sorted into class folders)')
  _, files, labels = list_image_folder(split_dir, wnids)
  return file_split(split_dir.name, files, labels, split_dir, ['imagenet', image_size])


def _tfds_splits(data_dir: str, wnids, image_size: int) -> dict[str, EncodedSplit]:
  # Slow to import, and only this path needs it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  if not builder.is_prepared():
    raise UsageError(f'--data_dir={data_dir} holds neither an ILSVRC2012 folder ({LAYOUT}) nor '
                     'TFDS\'s prepared imagenet2012: see docs/protocol.md, "Laying out ILSVRC2012"')
  all_wnids = list(builder.info.features['label'].names)
  original = tf.constant([all_wnids.index(wnid) for wnid in wnids], tf.int64)

  def split(tfds_split):
    def dataset():
      records = builder.as_dataset(split=tfds_split, shuffle_files=False,
                                   decoders={'image': tfds.decode.SkipDecoding()})
      # Named functions, not lambdas: autograph reads a lambda's source to convert it, and it once
      # took the filter's two-argument lambda for the map's (a TypeError in the suite).
      def relabel(record):
        # The subset's label is the member's position in the subset, -1 for any other class.
        return record['image'], tf.reduce_max(tf.where(record['label'] == original,
                                                       tf.range(len(wnids), dtype=tf.int64), -1))

      def is_member(image, label):
        del image
        return label >= 0

      return records.map(relabel).filter(is_member)

    key = digest(['tfds', builder.data_dir, tfds_split, image_size, list(wnids)])
    return EncodedSplit(tfds_split, key, dataset,
                         lambda position: f'image {position} of the subset in imagenet2012/'
                                          f'{tfds_split} (under {builder.data_dir})')

  return {split_name: split(tfds_split) for split_name, tfds_split in TFDS_SPLITS.items()}


def load_imagenet(dataset: str, data_dir: str | None, image_size: int = 256, members=(),
                  cache_dir: str | None = None, skip_corrupt: bool = False, log=print):
  """The subset `dataset` as a Source: classes named as in Table 8, also known by WordNet id."""
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
    images, labels, value_counts = prepared(split, cache, image_size,
                                            skip_corrupt=skip_corrupt, log=log)
    counts = np.bincount(labels, minlength=len(wnids))
    empty = [wnid for wnid, count in zip(wnids, counts) if not count]
    if empty:
      raise UsageError(f'the {split_name} split has no images of {", ".join(empty)} in '
                       f'--data_dir={data_dir}')
    arrays[split_name] = LabelledImages(images, labels, value_counts)
  return Source(name=dataset, class_names=tuple(name for _, name in chosen),
                class_ids=tuple(wnids), train=arrays['train'], test=arrays['test'])
