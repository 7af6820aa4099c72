"""The per-replica steps: which variables each step moves, and the weight decay each applies."""

import numpy as np
import pytest
import tensorflow as tf

from tfanom.models.trunk import TaskBatchNorm
from tfanom.training.distribute import make_strategy
from tfanom.training.loop import Trainer


def snapshot(variables):
  return [v.numpy().copy() for v in variables]


def assert_equal_values(variables, values):
  assert len(variables) == len(values)
  for variable, value in zip(variables, values):
    np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


def changed(variables, values):
  return [not np.array_equal(v.numpy(), x) for v, x in zip(variables, values)]


def moving_statistics(model):
  return [v for layer in model._flatten_layers() if isinstance(layer, TaskBatchNorm)
          for v in layer.moving_mean + layer.moving_variance]


def test_alternating_steps_leave_the_other_head_alone(digits_split, make_config):
  strategy = make_strategy('default')
  trainer = Trainer(make_config(), digits_split, strategy, log=lambda line: None)
  batch = next(iter(trainer.pipeline.train_dataset(0)))
  steps = trainer.steps
  aux_step = tf.function(lambda images: strategy.run(steps.aux_step, args=(images,)))
  cls_step = tf.function(
      lambda images, labels: strategy.run(steps.cls_step, args=(images, labels)))
  class_head = trainer.model.class_head.trainable_variables
  rotation_head = trainer.aux_task.trainable_variables
  trunk = trainer.model.trunk_variables()
  statistics = moving_statistics(trainer.model)

  before = [snapshot(v) for v in (class_head, rotation_head, trunk, statistics)]
  aux_step(batch['aux_image'])
  assert_equal_values(class_head, before[0])
  assert all(changed(rotation_head, before[1])) and any(changed(trunk, before[2]))
  # --aux_norm=protected: rotated images never reach the moving statistics.
  assert_equal_values(statistics, before[3])

  before = [snapshot(v) for v in (class_head, rotation_head, trunk, statistics)]
  cls_step(batch['image'], batch['label'])
  assert_equal_values(rotation_head, before[1])
  assert all(changed(class_head, before[0])) and any(changed(trunk, before[2]))
  assert all(changed(statistics, before[3]))


@pytest.mark.parametrize('scope', ['kernels', 'all'])
@pytest.mark.parametrize('aux_decays_trunk', [False, True])
def test_the_auxiliary_step_decays_what_its_flags_name(digits_split, make_config, scope,
                                                       aux_decays_trunk):
  # With lambda = 0 and no momentum an auxiliary step is weight decay alone: plain SGD moves each
  # decayed w to w - lr * wd * w and leaves every other variable as it was.
  lr, wd = 0.1, 0.01
  strategy = make_strategy('default')
  trainer = Trainer(make_config(aux_weight=0.0, momentum=0.0, learning_rate=lr, weight_decay=wd,
                                weight_decay_scope=scope, aux_decays_trunk=aux_decays_trunk),
                    digits_split, strategy, log=lambda line: None)
  batch = next(iter(trainer.pipeline.train_dataset(0)))
  aux_variables = trainer.steps.aux_variables
  before = snapshot(aux_variables)
  strategy.run(tf.function(trainer.steps.aux_step), args=(batch['aux_image'],))
  head = {id(v) for v in trainer.aux_task.trainable_variables}
  decayed = 0
  for variable, value in zip(aux_variables, before):
    if (id(variable) in head or aux_decays_trunk) and (scope == 'all' or variable.name == 'kernel'):
      value, decayed = value - lr * wd * value, decayed + 1
    np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6, atol=1e-9, err_msg=variable.path)
  trunk = len(trainer.model.trunk_variables())
  kernels = sum(v.name == 'kernel' for v in aux_variables)
  assert decayed == {(False, 'kernels'): 1, (False, 'all'): 2, (True, 'kernels'): kernels,
                     (True, 'all'): trunk + 2}[aux_decays_trunk, scope]
