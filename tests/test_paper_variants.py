"""The paper's network variants (section 5), STL-10 end to end under TFDS's mock data, and Table
7's central mask."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfanom.config import TrainConfig
from tfanom.data.holdout import make_holdout
from tfanom.data.pipeline import InputPipeline, center_mask
from tfanom.data.arrays import LabelledImages, Source
from tfanom.data.sources import load_source
from tfanom.errors import UsageError
from tfanom.models.wide_resnet import build_wide_resnet
from tfanom.models import wrn_config
from tfanom.training.run import train_and_evaluate


def expected_trainable_parameters(depth, width, num_classes, extra_groups=0, stem='cifar'):
  """Counts a pre-activation WRN's weights by hand: bias-free convolutions, a scale and a shift per
  normalised channel, a projection shortcut wherever the shape changes, a linear head."""
  blocks = (depth - 4) // 6
  if stem == 'imagenet_maxpool':
    total, channels = 7 * 7 * 3 * 64, 64
  else:
    total, channels = 3 * 3 * 3 * 16, 16
  widths = [16 * width, 32 * width, 64 * width] + [64 * width] * extra_groups
  for group, out in enumerate(widths):
    for block in range(blocks):
      strides = 2 if group > 0 and block == 0 else 1
      total += 2 * channels + 9 * channels * out + 2 * out + 9 * out * out
      if channels != out or strides != 1:
        total += channels * out
      channels = out
  return total + 2 * channels + channels * num_classes + num_classes


def trainable_parameters(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def feature_map(model, images):
  """The trunk's output before global pooling."""
  outputs = (images - model.pixel_mean) / model.pixel_std
  for layer in model.stem:
    outputs = layer(outputs)
  for block in model.blocks:
    outputs = block(outputs)
  return outputs


def test_parameter_count_matches_the_published_wrn_28_10():
  # WRN-28-10 on CIFAR-10 has 36,479,194 parameters (Zagoruyko & Komodakis's reference code).
  assert expected_trainable_parameters(28, 10, 10) == 36_479_194


@pytest.mark.parametrize('dataset, side, classes, feature_shape', [
    ('stl10', 96, 9, (12, 12, 256)),  # three downsamplings: 96 / 8
    ('imagenet_dog', 224, 11, (7, 7, 256)),  # stem / 4, then three downsamplings: 224 / 32
])
def test_network_variants(dataset, side, classes, feature_shape):
  config = TrainConfig(dataset=dataset).resolved()
  model = build_wide_resnet(wrn_config(config, classes), (side, side, 3), np.zeros(3, np.float32),
                            np.ones(3, np.float32))
  assert trainable_parameters(model) == expected_trainable_parameters(
      config.depth, config.width, classes, config.extra_groups, config.stem)
  # The fourth group is as wide as the third and downsamples at its first block.
  assert len(model.blocks) == 16 and model.blocks[12].strides == 2
  images = tf.zeros((1, side, side, 3))
  assert feature_map(model, images).shape == (1, *feature_shape)
  assert model(images).shape == (1, classes)


def test_paper_text_stem_averages_after_a_3x3_convolution():
  config = TrainConfig(dataset='imagenet_spider', stem='imagenet_avgpool', depth=10,
                       width=1).resolved()
  model = build_wide_resnet(wrn_config(config, 5), (64, 64, 3), np.zeros(3, np.float32),
                            np.ones(3, np.float32))
  assert trainable_parameters(model) == expected_trainable_parameters(10, 1, 5, 1)
  assert feature_map(model, tf.zeros((1, 64, 64, 3))).shape == (1, 4, 4, 64)  # 64 / 2 / 8
  with pytest.raises(UsageError, match='--stem=bogus is unknown'):
    wrn_config(TrainConfig(stem='bogus').resolved(), 9)


def test_stl10_trains_end_to_end_on_mock_data(tmp_path):
  # Prepared in tmp_path: without a data dir, mock_data's is inside the TFDS package. Without the
  # rotation task, which STL-10 does not change: the first traced calls of training and of
  # evaluation take most of this run's CPU.
  with tfds.testing.mock_data(num_examples=24):
    assert load_source('stl10', None, cache_dir=str(tmp_path)).image_shape == (96, 96, 3)
    config = TrainConfig(dataset='stl10', holdout='9', workdir=str(tmp_path / 'run'),
                         cache_dir=str(tmp_path), depth=10, width=1, epochs=1, batch_size=8,
                         final_window=1, strategy='default', aux='none')
    results = train_and_evaluate(config, log=lambda line: None)
  assert results['num_examples'] == 24 and results['num_anomalies'] > 0
  assert results['flags']['extra_groups'] == 1 and results['flags']['stem'] == 'cifar'
  assert all(0 <= ap <= 100 for ap in results['ap'].values())


def test_center_mask_stays_inside_the_central_region():
  images = tf.fill([400, 32, 32, 3], tf.constant(200, tf.uint8))
  masked = center_mask(images, tf.constant([1, 2], tf.int64), tf.zeros([3], tf.uint8)).numpy()
  hit = (masked == 0).all(-1)
  assert ((masked == 0) == hit[..., None]).all()  # every channel or none
  for image in hit:
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    assert image.sum() == 16 * 16 and len(rows) == 16 and len(cols) == 16
    assert rows[-1] - rows[0] == 15 and cols[-1] - cols[0] == 15
  # The central 21x21 region of 32x32 is rows and columns 5..25: every offset 5..10 occurs.
  assert sorted({np.flatnonzero(image.any(1))[0] for image in hit}) == list(range(5, 11))
  assert sorted({np.flatnonzero(image.any(0))[0] for image in hit}) == list(range(5, 11))


def test_center_mask_augmentation_fills_with_the_training_mean():
  # Left half 200, right half 56: the mean is 128, which no other pixel has.
  images = np.full((24, 32, 32, 3), 200, np.uint8)
  images[:, :, 16:] = 56
  labels = np.arange(24) % 3
  source = Source('halves', ('a', 'b', 'c'), LabelledImages(images, labels),
                  LabelledImages(images, labels))
  split = make_holdout(source, 1)
  pipeline = InputPipeline(split, batch_size=8, augment='center_mask', seed=0)
  batch = next(iter(pipeline.train_dataset(0)))['image'].numpy()
  filled = (batch == 128).all(-1)
  assert (filled.sum((1, 2)) == 256).all()
  assert not filled[:, :5].any() and not filled[:, 26:].any()
  assert not filled[:, :, :5].any() and not filled[:, :, 26:].any()
  evaluation = next(iter(pipeline.eval_dataset(8)))['image'].numpy()
  assert not (evaluation == 128).any()  # evaluation images are never masked
