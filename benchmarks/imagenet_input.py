r"""Measures the ImageNet input path: decoding into the cache, reading the cache, and the training
pipeline's batches (random 224 crops of 256 images, flips, auxiliary centre crops).

  python3 -m benchmarks.imagenet_input                   # a fake ILSVRC folder of 500x375 JPEGs
  python3 -m benchmarks.imagenet_input --data_dir=~/ILSVRC2012 --dataset=imagenet_dog

The pipeline figure is what the input side can feed a training step; compare it with the img/s that
`python -m tfanom.train` prints to see which side is the bottleneck.
"""

import os
import pathlib
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfanom.config import TrainConfig  # noqa: E402
from tfanom.data import imagenet  # noqa: E402
from tfanom.data.holdout import make_holdout  # noqa: E402
from tfanom.data.pipeline import InputPipeline  # noqa: E402
from tfanom.data.sources import load_source  # noqa: E402

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'ILSVRC2012; default: a fake one in a temp dir.')
_DATASET = flags.DEFINE_string('dataset', 'imagenet_spider', 'The subset to load.')
_FAKE_IMAGES = flags.DEFINE_integer('fake_images', 200, 'Training JPEGs per member when faking.')
_PIPELINE_EPOCHS = flags.DEFINE_integer('pipeline_epochs', 2, 'Training epochs to time.')


def write_fake_ilsvrc(root: pathlib.Path, wnids, per_member: int):
  """JPEGs of ImageNet's typical 500x375, smooth like photographs (noise would decode slower)."""
  rng = np.random.default_rng(0)
  variants = []
  for _ in range(16):
    coarse = rng.uniform(0, 255, (1, 24, 32, 3)).astype(np.float32)
    image = tf.image.resize(coarse, (375, 500), method='bicubic')[0]
    variants.append(tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8),
                                      quality=90).numpy())
  for split, count in (('train', per_member), ('val', 50)):
    for wnid in wnids:
      folder = root / split / wnid
      folder.mkdir(parents=True)
      for number in range(count):
        (folder / f'{wnid}_{number}.JPEG').write_bytes(variants[number % len(variants)])


def main(argv):
  del argv
  with tempfile.TemporaryDirectory(prefix='tfanom-bench-') as workspace:
    measure(TrainConfig(dataset=_DATASET.value).resolved(), pathlib.Path(workspace))


def measure(config: TrainConfig, workspace: pathlib.Path):
  data_dir = _DATA_DIR.value
  if data_dir is None:
    data_dir = str(workspace / 'ilsvrc')
    wnids = [wnid for wnid, _ in imagenet.subset_members(config.dataset)]
    write_fake_ilsvrc(pathlib.Path(data_dir), wnids, _FAKE_IMAGES.value)
  cache_dir = str(workspace / 'cache')
  start = time.perf_counter()
  source = load_source(config.dataset, data_dir, config.image_size, cache_dir=cache_dir)
  seconds = time.perf_counter() - start
  total = len(source.train) + len(source.test)
  print(f'decode into the cache: {total} images in {seconds:.1f} s = {total / seconds:.0f} img/s '
        f'({os.cpu_count()} CPUs)')
  start = time.perf_counter()
  source = load_source(config.dataset, data_dir, config.image_size, cache_dir=cache_dir)
  split = make_holdout(source, 0)
  print(f'load from the cache and split: {time.perf_counter() - start:.2f} s')
  pipeline = InputPipeline(split, config.batch_size, config.batch_size // 4, config.augment,
                           config.seed, config.crop_size)
  for epoch in range(_PIPELINE_EPOCHS.value):
    start, images = time.perf_counter(), 0
    for batch in pipeline.train_dataset(epoch):
      images += int(batch['image'].shape[0])
    seconds = time.perf_counter() - start
    print(f'training pipeline, epoch {epoch + 1}: {images} images (batch {config.batch_size}, '
          f'{config.crop_size}x{config.crop_size} crops, plus auxiliary crops) in {seconds:.2f} s '
          f'= {images / seconds:.0f} img/s')


if __name__ == '__main__':
  app.run(main)
