"""Wide ResNets, task-aware batch normalisation and the rotation task."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tfanom.auxiliary import make_auxiliary_task
from tfanom.auxiliary.rotation import RotationTask, rotate_batch
from tfanom.errors import UsageError
from tfanom.models.trunk import TaskBatchNorm, checkpoint_variables, weight_decay_variables
from tfanom.models.wide_resnet import WRNConfig, build_wide_resnet

RGB_MEAN, RGB_STD = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)


def num_trainable(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def build(image_shape=(32, 32, 3), **config):
  channels = image_shape[-1]
  return build_wide_resnet(WRNConfig(**config), image_shape, RGB_MEAN[:channels],
                           RGB_STD[:channels])


# Parameter counts ----------------------------------------------------------------------------
# Zagoruyko & Komodakis report WRN-28-10 36.5M, WRN-16-8 11.0M and WRN-40-4 8.9M parameters for
# CIFAR-10; the exact counts (3x3 convolutions without bias, 1x1 projection shortcuts, batch-norm
# scale and shift, the final linear layer with bias) are those of the reference implementations.


@pytest.fixture(scope='module')
def wrn_28_10():
  return build(depth=28, width=10, dropout=0.3, num_classes=10)


def test_wrn_28_10_has_the_standard_parameter_count(wrn_28_10):
  assert num_trainable(wrn_28_10) == 36_479_194
  assert wrn_28_10(tf.random.uniform((2, 32, 32, 3))).shape == (2, 10)


@pytest.mark.parametrize('depth,width,count', [(16, 8, 10_961_370), (40, 4, 8_949_210)])
def test_other_standard_parameter_counts(depth, width, count):
  assert num_trainable(build(depth=depth, width=width, num_classes=10)) == count


def test_normalisation_is_not_trained():
  model = build(depth=10, width=1, num_classes=4)
  names = {v.name for v in model.non_trainable_variables}
  assert {'pixel_mean', 'pixel_std'} <= names
  assert not {'pixel_mean', 'pixel_std'} & {v.name for v in model.trainable_variables}
  decayed = weight_decay_variables(model.trainable_variables)
  assert decayed and all(len(v.shape) in (2, 4) for v in decayed)  # kernels only
  assert len(decayed) == 1 + 2 * 3 + 2 + 1  # stem, 2 per block, 2 projections, head


@pytest.mark.parametrize('config,image_shape,feature_dim', [
    (dict(depth=10, width=1, num_classes=9), (32, 32, 1), 64),
    (dict(depth=10, width=2, num_classes=3, extra_groups=1), (48, 48, 3), 128),
    (dict(depth=10, width=1, num_classes=5, stem='imagenet_maxpool'), (64, 64, 3), 64),
    (dict(depth=10, width=1, num_classes=5, stem='imagenet_avgpool', padding='reflect'),
     (32, 32, 3), 64),
])
def test_output_shapes(config, image_shape, feature_dim):
  model = build(image_shape, **config)
  images = tf.random.uniform((3, *image_shape))
  assert model(images).shape == (3, config['num_classes'])
  assert model.features(images, training=True).shape == (3, feature_dim)


@pytest.mark.parametrize('field,value', [('depth', 12), ('depth', 4), ('depth', 27),
                                         ('width', 0), ('dropout', 1.0), ('stem', 'vgg'),
                                         ('padding', 'wrap')])
def test_bad_architecture_raises_usage_error(field, value):
  with pytest.raises(UsageError, match=f'--{field}={value}'):
    WRNConfig(**{field: value})


# TaskBatchNorm -------------------------------------------------------------------------------


def built_norm(num_tasks=1, channels=3):
  layer = TaskBatchNorm(num_tasks)
  layer.build((None, 4, 4, channels))
  return layer


def moving_statistics(layer, task=0):
  return [layer.moving_mean[task].numpy(), layer.moving_variance[task].numpy()]


def test_batch_norm_protected_step_leaves_moving_statistics_alone():
  layer = built_norm()
  inputs = tf.random.normal((8, 4, 4, 3), mean=3.0, stddev=2.0)
  before = moving_statistics(layer)
  outputs = layer(inputs, training=True, update_stats=False)
  for value, reference in zip(moving_statistics(layer), before):
    np.testing.assert_array_equal(value, reference)
  # It still normalises with the batch's statistics.
  np.testing.assert_allclose(tf.reduce_mean(outputs, [0, 1, 2]), 0.0, atol=1e-4)
  np.testing.assert_allclose(tf.math.reduce_std(outputs, [0, 1, 2]), 1.0, atol=1e-3)
  # An ordinary training call moves them towards the batch's statistics.
  layer(inputs, training=True)
  mean, variance = tf.nn.moments(inputs, [0, 1, 2])
  np.testing.assert_allclose(layer.moving_mean[0], 0.1 * mean.numpy(), rtol=1e-5)
  np.testing.assert_allclose(layer.moving_variance[0], 0.9 + 0.1 * variance.numpy(), rtol=1e-5)


def test_conditional_batch_norm_keeps_separate_parameters():
  layer = built_norm(num_tasks=2)
  layer.gamma[1].assign([2.0, 2.0, 2.0])
  layer.beta[1].assign([1.0, 1.0, 1.0])
  inputs = tf.random.normal((8, 4, 4, 3))
  first = layer(inputs, training=True, task=0)
  second = layer(inputs, training=True, task=1)
  np.testing.assert_allclose(second, 2.0 * first + 1.0, rtol=1e-5, atol=1e-5)
  # Each task moved only its own statistics.
  assert not np.allclose(layer.moving_mean[0], 0.0)
  np.testing.assert_allclose(layer.moving_mean[1], layer.moving_mean[0], rtol=1e-6)
  layer(inputs * 5.0, training=True, task=1)
  assert not np.allclose(layer.moving_mean[1], layer.moving_mean[0])
  # At test time each task uses its own moving statistics.
  inference = [layer(inputs, task=task).numpy() for task in (0, 1)]
  assert not np.allclose(inference[0] * 2.0 + 1.0, inference[1], atol=1e-3)


def test_trunk_variables_exclude_the_other_tasks_normalisation():
  model = build(depth=10, width=1, num_classes=4, norm_tasks=2)
  norms = [layer for layer in model._flatten_layers() if isinstance(layer, TaskBatchNorm)]
  assert len(norms) == 2 * 3 + 1
  own = {task: {id(v) for layer in norms for v in layer.task_variables(task)} for task in (0, 1)}
  head = {id(v) for v in model.class_head.trainable_variables}
  trunk = {task: {id(v) for v in model.trunk_variables(task)} for task in (0, 1)}
  for task, other in ((0, 1), (1, 0)):
    assert own[task] <= trunk[task]
    assert not own[other] & trunk[task]
    assert not head & trunk[task]
  # Everything else (the convolutions) is shared.
  everything = {id(v) for v in model.trainable_variables}
  assert trunk[0] | trunk[1] | head == everything
  assert trunk[0] - own[0] == trunk[1] - own[1]
  # With shared normalisation, every task trains the same trunk.
  shared = build(depth=10, width=1, num_classes=4)
  assert ([v.path for v in shared.trunk_variables(0)]
          == [v.path for v in shared.trunk_variables(1)])


# Rotations -----------------------------------------------------------------------------------


def test_rot90_rotations_match_numpy():
  images = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 2), dtype=np.uint8)
  rotated, labels = rotate_batch(tf.constant(images), 'rot90')
  rotated, labels = rotated.numpy(), labels.numpy()
  assert rotated.shape == (12, 5, 5, 2)
  np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 3))
  for k in range(4):
    for i, image in enumerate(images):
      np.testing.assert_array_equal(rotated[3 * k + i], np.rot90(image, k, axes=(0, 1)))
  # Counter-clockwise: the top-right corner goes to the top-left.
  np.testing.assert_array_equal(rotated[3, 0, 0], images[0, 0, -1])


def test_official_rotations_are_flips_and_transposes():
  images = np.random.default_rng(1).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
  rotated, labels = rotate_batch(tf.constant(images), 'official')
  rotated = rotated.numpy()
  expected = [images, images[:, ::-1], images.transpose(0, 2, 1, 3),
              images[:, ::-1].transpose(0, 2, 1, 3)]
  for k, reference in enumerate(expected):
    np.testing.assert_array_equal(rotated[2 * k:2 * k + 2], reference)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3, 3])


def test_rotation_task_logits():
  model = build((8, 8, 1), depth=10, width=1, num_classes=3)
  task = make_auxiliary_task(tiny_config(aux='rotation'))
  assert isinstance(task, RotationTask) and make_auxiliary_task(tiny_config(aux='none')) is None
  task.build(model, (8, 8, 1))
  logits, labels = task.logits_and_labels(model, tf.random.uniform((5, 8, 8, 1)))
  assert logits.shape == (20, 4) and labels.shape == (20,)
  assert len(task.trainable_variables) == 2
  with pytest.raises(UsageError, match='--rotations=bogus'):
    RotationTask('bogus')
  with pytest.raises(UsageError, match='--aux=bogus'):
    make_auxiliary_task(dataclasses.replace(tiny_config(), aux='bogus'))


def test_checkpoint_holds_every_model_variable(tmp_path):
  config = WRNConfig(depth=10, width=1, dropout=0.3, num_classes=3, norm_tasks=2, extra_groups=1)
  original, restored = (build_wide_resnet(config, (8, 8, 3), RGB_MEAN, RGB_STD) for _ in range(2))
  rng = np.random.default_rng(0)
  # Moving statistics, normalisation and the dropout seed generators' states included.
  for variable in original.variables:
    variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
  path = tf.train.Checkpoint(model=checkpoint_variables(original)).write(str(tmp_path / 'model'))
  tf.train.Checkpoint(model=checkpoint_variables(restored)).read(path).assert_consumed()
  assert len(restored.variables) == len(original.variables)
  for variable, reference in zip(restored.variables, original.variables):
    np.testing.assert_array_equal(variable.numpy(), reference.numpy(), err_msg=variable.path)
