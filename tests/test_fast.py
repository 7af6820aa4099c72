"""The fast network and recipe of --preset=fast (tfanom.models.fast and what the preset sets)."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tfanom.config import PRESETS, TrainConfig
from tfanom.data.holdout import make_holdout
from tfanom.data.pipeline import InputPipeline
from tfanom.errors import UsageError
from tfanom.inference.evaluation import EvalConfig, eval_table, evaluate
from tfanom.inference.scorer import Scorer, shifted, tta_views
from tfanom.models.fast import FastNetConfig, build_fast_net, whitening_kernel
from tfanom.training.distribute import make_strategy
from tfanom.training.loop import Trainer
from tfanom.training.run import train_and_evaluate

from tests.helpers import first_examples, half_side

MEAN, STD = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)


def fast_config(make_config, **overrides):
  """The fast preset on digits, in batches small enough for several steps an epoch."""
  return make_config(**dict(dict(preset='fast', network=None, depth=None, width=None,
                                 batch_size=128, augment='crop'), **overrides))


def test_images_too_small_for_the_network_are_refused():
  with pytest.raises(UsageError, match='8x8 images are too small for --network=fast'):
    build_fast_net(FastNetConfig(num_classes=3), (8, 8, 3), MEAN, STD)


@pytest.fixture(scope='module')
def untrained_net():
  """A fast network for 32x32 images in 10 classes, as built: tests only read it (building one
  took 2 s of CPU)."""
  return build_fast_net(FastNetConfig(num_classes=10), (32, 32, 3), MEAN, STD)


def test_shapes_and_parameter_count(untrained_net):
  model = untrained_net
  images = tf.random.uniform((2, 32, 32, 3))
  assert model.features(images).shape == (2, 256)
  assert model(images).shape == (2, 10)
  outputs = tf.nn.gelu(model.whitening(model.normalize(images)))
  sides = [outputs.shape[1]]
  for group in model.groups:
    outputs = group(outputs)
    sides.append(outputs.shape[1])
  assert sides == [31, 15, 7, 3]
  convolutions = 9 * (24 * 64 + 64 * 64 + 64 * 256 + 256 * 256 + 2 * 256 * 256)
  shifts = 2 * (64 + 256 + 256)  # batch norm without scale: one shift per channel
  head = 256 * 10 + 10
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  assert trainable == 24 + convolutions + shifts + head == 1_971_362
  assert not model.whitening.kernel.trainable


def numpy_patches(images, k=2):
  """Every k x k patch of [N, H, W, C] images, flattened row by row (a kernel's [k, k, C] order)."""
  n, height, width, channels = images.shape
  rows = [images[:, i:i + k, j:j + k, :].reshape(n, -1)
          for i in range(height - k + 1) for j in range(width - k + 1)]
  return np.concatenate(rows)


def test_whitening_layer_whitens_patches():
  rng = np.random.default_rng(0)
  # Correlated channels and neighbouring pixels, as in natural images.
  base = rng.normal(size=(40, 9, 9, 1))
  images = np.concatenate([base, 0.8 * base + 0.2 * rng.normal(size=base.shape),
                           rng.normal(size=base.shape)], -1)
  images = (images + np.roll(images, 1, axis=1)).astype(np.float32)
  patches = numpy_patches(images)
  covariance = patches.T.astype(np.float64) @ patches / len(patches)
  eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1]
  model = build_fast_net(FastNetConfig(num_classes=3), (9, 9, 3), np.zeros(3, np.float32),
                         np.ones(3, np.float32))
  model.whitening.fit(tf.constant(images))
  filters = model.whitening.kernel.numpy().reshape(12, 24)
  positive = filters[:, :12]
  # Whitened patches: covariance diag(lambda / (lambda + eps)), the largest eigenvalue first.
  np.testing.assert_allclose(positive.T @ covariance @ positive,
                             np.diag(eigenvalues / (eigenvalues + 5e-4)), atol=2e-4)
  np.testing.assert_array_equal(filters[:, 12:], -positive)
  # The convolution applies the filters to the patches in the kernel's order.
  outputs = model.whitening(tf.constant(images)).numpy()
  n = len(images)
  expected = (patches @ filters).reshape(8, 8, n, 24).transpose(2, 0, 1, 3)
  np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(whitening_kernel(patches), filters, rtol=1e-6)


def test_convolutions_start_as_identities(untrained_net):
  kernel = untrained_net.groups[1].conv1.kernel.numpy()  # 64 -> 256 channels
  np.testing.assert_array_equal(kernel[:, :, :, :64], np.eye(64)[None, None] * np.pad(
      np.ones((1, 1)), 1)[:, :, None, None])
  bound = 1 / np.sqrt(9 * 64)
  others = kernel[:, :, :, 64:]
  assert np.abs(others).max() <= bound and others.std() > bound / 3


def test_tta_views_average_mirror_and_one_pixel_shifts(untrained_net):
  images = tf.random.uniform((2, 9, 9, 3))  # the smallest side the network takes
  padded = np.pad(images.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)], mode='reflect')
  np.testing.assert_array_equal(shifted(images, 1, 1), padded[:, :9, :9])  # moved down-right
  np.testing.assert_array_equal(shifted(images, -1, -1), padded[:, 2:, 2:])
  views = tta_views(images, 'flip_translate')
  assert sum(weight for weight, _ in views) == 1.0 and len(views) == 6
  model, images = untrained_net, tf.random.uniform((2, 32, 32, 3))
  logits = Scorer(model, tta='flip').logits(images)
  expected = 0.5 * (model(images) + model(images[:, :, ::-1]))
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_alternating_flips_mirror_each_image_in_one_of_two_epochs(digits_split):
  pipeline = InputPipeline(digits_split, 64, augment='crop_altflip', seed=0, crop_padding=0)
  train = digits_split.train.images
  # The training images equal to an image, and those whose mirror is, by the image's bytes.
  same, mirrored = collections.defaultdict(list), collections.defaultdict(list)
  for index, image in enumerate(train):
    same[image.tobytes()].append(index)
    mirrored[image[:, ::-1].tobytes()].append(index)
  counts = np.zeros(len(train), int)
  for epoch in (0, 1):
    for batch in pipeline.train_dataset(epoch):
      for image in batch['image'].numpy():
        key = image.astype(train.dtype).tobytes()
        counts[[i for i in mirrored.get(key, []) if i not in same.get(key, [])]] += 1
  # Every image seen in both epochs was mirrored exactly once (symmetric images never count).
  assert counts.max() == 1 and counts.sum() > 0.4 * len(train)


def test_norm_shifts_move_by_the_scaled_rate(digits_split, make_config):
  # One step of SGD on one batch of 32 images at 16x16: the update is linear in the rate whatever
  # the images.
  split, moves = half_side(first_examples(digits_split, train=32)), {}
  for scale in (1.0, 64.0):
    config = fast_config(make_config, aux='none', momentum=0.0, weight_decay=0.0, batch_size=32,
                         norm_shift_lr_scale=scale, learning_rate=1e-3)
    trainer = Trainer(config, split, make_strategy('default'), log=lambda line: None)
    shifts = [v for v in trainer.model.trainable_variables if id(v) in trainer.model.norm_shifts()]
    kernels = [v for v in trainer.model.trainable_variables if v.name == 'kernel']
    before = [v.numpy().copy() for v in shifts + kernels]
    batch = next(iter(trainer.pipeline.train_dataset(0)))
    trainer.steps.cls_step(batch['image'], batch['label'])
    moves[scale] = [v.numpy() - b for v, b in zip(shifts + kernels, before)]
  count = len(shifts)
  for index, (small, large) in enumerate(zip(moves[1.0], moves[64.0])):
    factor = 64.0 if index < count else 1.0
    np.testing.assert_allclose(large, factor * small, rtol=1e-3,
                               atol=1e-4 * factor * np.abs(small).max())


def test_preset_fills_unset_settings_and_flags_win():
  config = TrainConfig(dataset='cifar10', preset='fast', epochs=12).resolved()
  assert config.network == 'fast' and config.epochs == 12
  assert config.learning_rate == PRESETS['fast']['learning_rate'] == pytest.approx(1.3043478)
  assert config.depth is None and config.width is None  # the fast network has neither
  assert TrainConfig(dataset='cifar10', preset='fast', depth=16).ignored_settings() == ['depth']
  with pytest.raises(UsageError, match='--preset=slow is unknown'):
    TrainConfig(preset='slow').resolved()
  with pytest.raises(UsageError, match='--aux=cpc needs --network=wide_resnet'):
    TrainConfig(preset='fast', aux='cpc').resolved()
  # The run would stop at its first step with TensorFlow's UnimplementedError.
  with pytest.raises(UsageError, match='--deterministic with --xla cannot train --network=fast:'):
    TrainConfig(preset='fast', deterministic=True, xla=True).resolved()
  TrainConfig(preset='fast', deterministic=True).resolved()
  TrainConfig(preset='fast', xla=True).resolved()


def test_a_fast_epoch_on_digits_learns(digits_split, make_config):
  # Without rotation and test-time augmentation, which the fast network trains and scores with in
  # test_resume_mid_epoch_is_exact_with_the_preset below and in test_mixed_precision.py::
  # test_the_fast_network_trains_and_scores_in_bfloat16_with_xla: each doubles what an image costs.
  # At 16x16: every other pixel of digits' 8x8 images upsampled to 32x32 loses none of the digit,
  # and the epoch took 14 s of CPU instead of 32. A run end to end (train_and_evaluate,
  # results.json) is checked by test_holdout_none_trains_on_every_class_and_reports_accuracy below,
  # the preset's settings (network=fast) by test_preset_fills_unset_settings_and_flags_win above.
  config = fast_config(make_config, aux='none', epochs=1, eval_every=1, batch_size=256, tta='none')
  trainer = Trainer(config, half_side(digits_split), make_strategy('default'),
                    log=lambda line: None)
  trainer.train()
  evaluation = trainer.evaluations[-1]
  # Four steps of training: far above chance (11.1%), far from converged. Measured 50.7% and
  # 50.5% (seeds 0 and 1, one or two intra-op threads alike), MSP's AP 21.4 and 27.5 against a
  # skew of 10.2.
  assert evaluation['accuracy'] > 25 and set(evaluation['ap']) == {'msp', 'odin'}
  assert evaluation['ap']['msp'] > evaluation['skew']


def test_resume_mid_epoch_is_exact_with_the_preset(digits_split, make_config, tmp_path):
  # 128 training images (at 16x16) in four steps, a checkpoint every two. The run resumed from the
  # checkpoint after step 2 ends with the same checkpoint as the uninterrupted run: every variable
  # (model, rotation head, both optimizers, progress) bit for bit. Neither evaluates: equal weights
  # scoring equally, and a stop request mid-epoch, are checked by tests/e2e/test_reliability.py
  # (test_sigkill_sigterm_in_a_closed_terminal_then_a_rerun_end_as_the_uninterrupted_run).
  digits_split = half_side(first_examples(digits_split, train=128))
  config = fast_config(make_config, epochs=1, deterministic=True, batch_size=32,
                       checkpoint_every_steps=2, steps_per_loop=2, tta='none')
  tf.config.experimental.enable_op_determinism()
  strategy = make_strategy('default')
  checkpoints, uninterrupted = tmp_path / 'checkpoints', tmp_path / 'uninterrupted'
  Trainer(config, digits_split, strategy, str(checkpoints), log=lambda line: None).train()
  uninterrupted.mkdir()
  for path in checkpoints.glob('ckpt-4.*'):
    path.rename(uninterrupted / path.name)

  resumed = Trainer(config, digits_split, strategy, str(checkpoints), log=lambda line: None)
  assert resumed.restore() == 0 and int(resumed.progress.step_in_epoch.numpy()) == 2
  resumed.train()
  reference = tf.train.load_checkpoint(str(uninterrupted / 'ckpt-4'))
  saved = tf.train.load_checkpoint(str(checkpoints / 'ckpt-4'))
  names = set(reference.get_variable_to_shape_map())
  assert names == set(saved.get_variable_to_shape_map())
  assert any(name.startswith('aux_optimizer/') for name in names)
  for name in sorted(names - {'_CHECKPOINTABLE_OBJECT_GRAPH'}):
    np.testing.assert_array_equal(saved.get_tensor(name), reference.get_tensor(name),
                                  err_msg=name)


def test_holdout_none_trains_on_every_class_and_reports_accuracy(digits, make_config, tmp_path):
  split = make_holdout(digits, 'none')
  assert split.num_classes == 10 and not split.is_anomaly.any()
  np.testing.assert_array_equal(split.evaluation.labels, digits.test.labels)
  # After one epoch in batches of 64 (about 21 steps) test accuracy was 10.2% with one intra-op
  # thread and 33.6% with two, at 28% training accuracy in both: too early to check. One epoch in
  # batches of 32 (42 steps, as many as two epochs of 64 at half the images): 49.1% and 54.0% with
  # one thread, 56.4% and 54.2% with two (seeds 0 and 1).
  results = train_and_evaluate(make_config(holdout='none', aux='none', epochs=1, batch_size=32,
                                           eval_every=1, workdir=str(tmp_path)),
                               log=lambda line: None)
  assert results['holdout'] == dict(index=-1, name='none')
  assert results['ap'] == {} and results['num_anomalies'] == 0 and results['accuracy'] > 20
  report = evaluate(EvalConfig(workdir=str(tmp_path), scores=('msp', 'energy')),
                    log=lambda line: None)
  assert report['scores'] == {} and report['accuracy'] == pytest.approx(results['accuracy'])
  assert eval_table(report).endswith('no anomaly to rank: scores.npz holds the scores')
