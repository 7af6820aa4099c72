"""The training loop: alternating steps, strategies, checkpoints and evaluation."""

import json
import os
import random
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tfanom.errors import UsageError
from tfanom.models.trunk import TaskBatchNorm
from tfanom.training.distribute import make_strategy
from tfanom.training.loop import Preempted, Trainer
from tfanom.training.results import final_metrics
from tfanom.workdir import CONFIG_FILE, check_resumable


STRATEGIES = ('default', 'onedevice', 'mirrored')


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


def model_state(trainer):
  return trainer.model.variables + trainer.aux_task.head.variables


@pytest.fixture(scope='module')
def strategy_runs(digits_split, make_config):
  """The same tiny run under each strategy (two epochs by default, else one), then evaluated."""
  runs = {}
  for name in STRATEGIES:
    strategy = make_strategy(name)
    # 127 leaves a last evaluation batch of 69, split unevenly between mirrored replicas.
    trainer = Trainer(make_config(strategy=name, eval_batch_size=127), digits_split, strategy,
                      log=lambda line: None)
    initial = snapshot(model_state(trainer))
    stats = [trainer.train_epoch(epoch) for epoch in range(2 if name == 'default' else 1)]
    runs[name] = dict(trainer=trainer, initial=initial, stats=stats,
                      evaluation=trainer.evaluate(), replicas=strategy.num_replicas_in_sync)
  return runs


def test_mirrored_strategy_has_two_replicas_on_the_split_cpu():
  assert len(tf.config.list_logical_devices('CPU')) == 2
  assert make_strategy('mirrored').num_replicas_in_sync == 2


@pytest.mark.parametrize('name', STRATEGIES)
def test_training_under_each_strategy_is_finite(strategy_runs, name):
  run = strategy_runs[name]
  assert run['replicas'] == (2 if name == 'mirrored' else 1)
  for stats in run['stats']:
    assert set(stats) == {'loss', 'accuracy', 'aux_loss', 'aux_accuracy'}
    assert all(np.isfinite(value) for value in stats.values())


def test_loss_falls(strategy_runs, digits_split):
  first, second = strategy_runs['default']['stats']
  assert second['loss'] < 0.9 * first['loss']
  assert second['aux_loss'] < first['aux_loss']
  assert second['accuracy'] > 100.0 / digits_split.num_classes  # above chance


@pytest.mark.parametrize('name', STRATEGIES)
def test_evaluation_scores_every_example_in_order(strategy_runs, digits_split, name):
  summary, arrays = strategy_runs[name]['evaluation']
  np.testing.assert_array_equal(arrays['label'], digits_split.evaluation.labels)
  assert summary['num_examples'] == len(digits_split.evaluation)
  assert summary['num_anomalies'] == int(digits_split.is_anomaly.sum())
  for key in ('msp', 'odin'):
    assert arrays[key].shape == arrays['label'].shape and np.all(np.isfinite(arrays[key]))
    assert 0.0 < summary['ap'][key] <= 100.0
  assert arrays['prediction'].min() >= 0 and arrays['prediction'].max() < digits_split.num_classes


def test_seed_alone_decides_the_initial_weights(digits_split, make_config):
  states = []
  for unrelated_seed in (1, 2):  # whatever random state the process is in
    random.seed(unrelated_seed)
    np.random.seed(unrelated_seed)
    tf.random.set_seed(unrelated_seed)
    trainer = Trainer(make_config(), digits_split, make_strategy('default'),
                      log=lambda line: None)
    states.append(snapshot(model_state(trainer)))
  for first, second in zip(*states):
    np.testing.assert_array_equal(first, second)
  other = Trainer(make_config(seed=1), digits_split, make_strategy('default'),
                  log=lambda line: None)
  assert not np.array_equal(other.aux_task.head.kernel.numpy(), states[0][-2])


def test_strategies_agree(strategy_runs):
  default = strategy_runs['default']
  for name in ('onedevice', 'mirrored'):
    assert len(strategy_runs[name]['initial']) == len(default['initial'])
    for initial, reference in zip(strategy_runs[name]['initial'], default['initial']):
      np.testing.assert_array_equal(initial, reference)
  # One device: the same computation.
  for stats, reference in zip(strategy_runs['onedevice']['stats'], default['stats']):
    assert stats['loss'] == pytest.approx(reference['loss'], rel=1e-4)
  # Two replicas: the same update up to batch statistics computed per replica (on half batches),
  # which moves the first epoch's mean loss by a few percent.
  for stats, reference in zip(strategy_runs['mirrored']['stats'], default['stats']):
    assert stats['loss'] == pytest.approx(reference['loss'], rel=0.1)
    assert stats['aux_loss'] == pytest.approx(reference['aux_loss'], rel=0.1)


def test_alternating_steps_leave_the_other_head_alone(digits_split, make_config):
  strategy = make_strategy('default')
  trainer = Trainer(make_config(), digits_split, strategy, log=lambda line: None)
  batch = next(iter(trainer.pipeline.train_dataset(0)))
  aux_step = tf.function(lambda images: strategy.run(trainer._aux_step, args=(images,)))
  cls_step = tf.function(
      lambda images, labels: strategy.run(trainer._cls_step, args=(images, labels)))
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
  before = snapshot(trainer.aux_variables)
  strategy.run(tf.function(trainer._aux_step), args=(batch['aux_image'],))
  head = {id(v) for v in trainer.aux_task.trainable_variables}
  decayed = 0
  for variable, value in zip(trainer.aux_variables, before):
    if (id(variable) in head or aux_decays_trunk) and (scope == 'all' or variable.name == 'kernel'):
      value, decayed = value - lr * wd * value, decayed + 1
    np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6, atol=1e-9, err_msg=variable.path)
  trunk = len(trainer.model.trunk_variables())
  kernels = sum(v.name == 'kernel' for v in trainer.aux_variables)
  assert decayed == {(False, 'kernels'): 1, (False, 'all'): 2, (True, 'kernels'): kernels,
                     (True, 'all'): trunk + 2}[aux_decays_trunk, scope]


class Interrupted(Exception):
  pass


def test_resume_continues_from_the_saved_epoch(strategy_runs, digits_split, make_config,
                                               tmp_path):
  config = make_config(eval_every=1)
  checkpoints = str(tmp_path / 'checkpoints')
  strategy = make_strategy('default')
  first = Trainer(config, digits_split, strategy, checkpoints, log=lambda line: None)
  save = first.manager.save

  def save_then_stop(**kwargs):  # the run is killed right after its first checkpoint
    save(**kwargs)
    raise Interrupted

  first.manager.save = save_then_stop
  with pytest.raises(Interrupted):
    first.train()

  lines = []
  resumed = Trainer(config, digits_split, strategy, checkpoints, log=lines.append)
  assert resumed.restore() == 1
  for variable, reference in zip(model_state(resumed), model_state(first)):
    np.testing.assert_array_equal(variable.numpy(), reference.numpy(), err_msg=variable.path)
  for optimizer in ('cls_optimizer', 'aux_optimizer'):
    restored, original = getattr(resumed, optimizer), getattr(first, optimizer)
    assert int(restored.iterations) == int(original.iterations) == resumed.steps_per_epoch
    for variable, reference in zip(restored.variables, original.variables):
      np.testing.assert_array_equal(variable.numpy(), reference.numpy())
  assert [e['epoch'] for e in resumed.evaluations] == [1]

  resumed.train()
  assert any(line.startswith('resumed from') for line in lines)
  assert not any(line.startswith('epoch 1/2') for line in lines)
  assert [e['epoch'] for e in resumed.evaluations] == [1, 2]
  assert int(resumed.cls_optimizer.iterations) == 2 * resumed.steps_per_epoch
  # The same weights as two uninterrupted epochs (same seed, same batches, same schedule).
  uninterrupted = strategy_runs['default']['trainer']
  for variable, reference in zip(resumed.model.trainable_variables,
                                 uninterrupted.model.trainable_variables):
    np.testing.assert_allclose(variable.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5,
                               err_msg=variable.path)


def test_workdir_with_other_settings_is_refused(tmp_path, make_config):
  config = make_config(workdir=str(tmp_path))
  (tmp_path / CONFIG_FILE).write_text(json.dumps(config.to_dict()))
  check_resumable(str(tmp_path), config)
  # Settings that do not change the result may differ on resumption.
  check_resumable(str(tmp_path), make_config(workdir='elsewhere', strategy='mirrored',
                                                  steps_per_loop=7, eval_batch_size=50))
  with pytest.raises(UsageError, match=r"epochs=2 there, 3 now.*use another --workdir"):
    check_resumable(str(tmp_path), make_config(workdir=str(tmp_path), epochs=3))


def test_final_metrics_average_the_last_window():
  evaluations = [dict(epoch=e, accuracy=10.0 * e, skew=5.0, ap=dict(msp=e, odin=2 * e))
                 for e in (2, 4, 5, 6)]
  final = final_metrics(evaluations, epochs=6, window=3)
  assert final == dict(epochs=[4, 5, 6], accuracy=50.0, skew=5.0, ap=dict(msp=5.0, odin=10.0))
  assert final_metrics(evaluations, epochs=6, window=0) == {}


@pytest.mark.parametrize('eval_every,final_window,expected', [
    (1, 0, [1, 2, 3, 4, 5]), (2, 0, [2, 4]), (0, 2, [4, 5]), (2, 2, [2, 4, 5]), (0, 0, [])])
def test_evaluation_schedule(eval_every, final_window, expected, make_config):
  trainer = Trainer.__new__(Trainer)  # should_evaluate only reads the config
  trainer.config = make_config(epochs=5, eval_every=eval_every, final_window=final_window)
  assert [e + 1 for e in range(5) if trainer.should_evaluate(e)] == expected


# Faults: damaged checkpoints, failed saves, stop requests at the end of short epochs ------------

@pytest.fixture(scope='module')
def trained_twice(digits_split, make_config, tmp_path_factory):
  config = make_config(steps_per_loop=50)  # longer than digits' epochs of 19 steps at batch 64
  checkpoints = str(tmp_path_factory.mktemp('two') / 'checkpoints')
  trainer = Trainer(config, digits_split, make_strategy('default'), checkpoints,
                    log=lambda line: None)
  trainer.train()
  return config, checkpoints, trainer


@pytest.fixture()
def two_checkpoints(trained_twice, tmp_path):
  """A fresh copy of a checkpoint directory holding epochs 1 and 2; the config; a trainer."""
  config, original, trainer = trained_twice
  checkpoints = str(tmp_path / 'checkpoints')
  shutil.copytree(original, checkpoints)
  state = os.path.join(checkpoints, 'checkpoint')
  with open(state) as handle:
    text = handle.read().replace(original, checkpoints)
  with open(state, 'w') as handle:
    handle.write(text)
  trainer.manager = tf.train.CheckpointManager(trainer.checkpoint, checkpoints, 2)
  return config, checkpoints, trainer


def damage(path_prefix, kind):
  if kind == 'truncated_data':
    data, = tf.io.gfile.glob(path_prefix + '.data-*')
    with open(data, 'r+b') as handle:
      handle.truncate(100)
  else:
    with open(path_prefix + '.index', 'wb') as handle:
      handle.write(b'overwritten by something else')


@pytest.mark.parametrize('kind', ['truncated_data', 'overwritten_index'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(two_checkpoints, digits_split,
                                                                  kind):
  config, checkpoints, trained = two_checkpoints
  older, newest = tf.train.CheckpointManager(trained.checkpoint, checkpoints, 2).checkpoints
  damage(newest, kind)
  lines = []
  resumed = Trainer(config, digits_split, make_strategy('default'), checkpoints, log=lines.append)
  assert resumed.restore() == 1
  warning, resumed_line = lines
  assert warning.startswith(f'warning: checkpoint {newest} is unreadable (')
  assert warning.endswith(f'moved to {checkpoints}/unreadable, trying the one before it')
  assert resumed_line.startswith(f'resumed from {older}: 1 of 2 epochs done')
  assert tf.train.latest_checkpoint(checkpoints) == older
  assert tf.io.gfile.glob(os.path.join(checkpoints, 'unreadable', '*.index'))
  if kind == 'truncated_data':  # what follows the fall-back does not depend on the damage
    # Training on writes a new second checkpoint and keeps the good first one until then.
    resumed.train()
    assert resumed.evaluations == [] and int(resumed.epoch.numpy()) == 2
    assert len(tf.train.CheckpointManager(resumed.checkpoint, checkpoints, 2).checkpoints) == 2


def test_no_readable_checkpoint_is_one_line(two_checkpoints, digits_split):
  config, checkpoints, trained = two_checkpoints
  for path in tf.train.CheckpointManager(trained.checkpoint, checkpoints, 2).checkpoints:
    damage(path, 'truncated_data')
  resumed = Trainer(config, digits_split, make_strategy('default'), checkpoints,
                    log=lambda line: None)
  with pytest.raises(UsageError, match='no readable checkpoint in .*move the workdir away'):
    resumed.restore()


def test_a_failed_save_is_one_line_and_leaves_no_temporary_files(two_checkpoints, digits_split):
  config, checkpoints, trained = two_checkpoints
  before = sorted(os.listdir(checkpoints))
  manager_save = tf.train.CheckpointManager.save

  def fail_half_way(manager, *args, **kwargs):
    os.makedirs(os.path.join(checkpoints, 'ckpt-99_temp'))  # as TensorFlow's writer leaves it
    raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')

  tf.train.CheckpointManager.save = fail_half_way
  try:
    with pytest.raises(UsageError, match=r'cannot write checkpoint \d+ in .*No space left on '
                       'device; free disk space.*the earlier checkpoints are kept'):
      trained.save()
  finally:
    tf.train.CheckpointManager.save = manager_save
  assert sorted(os.listdir(checkpoints)) == before


def test_a_full_disk_during_a_checkpoint_keeps_the_earlier_one(digits_split, make_config,
                                                                tmp_path):
  disk = tmp_path / 'disk'
  disk.mkdir()
  # Room for one checkpoint of this model (0.95 MB), not for two.
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1536k', 'tmpfs', str(disk)],
                           capture_output=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f'a size-limited filesystem needs mount as root: {mounted.stderr.decode().strip()}')
  try:
    checkpoints = str(disk / 'checkpoints')
    trainer = Trainer(make_config(steps_per_loop=50), digits_split, make_strategy('default'),
                      checkpoints, log=lambda line: None)
    with pytest.raises(UsageError, match=f'cannot write checkpoint {2 * trainer.steps_per_epoch} '
                       'in .*No space left on device.*the earlier checkpoints are kept'):
      trainer.train()
    assert tf.train.latest_checkpoint(checkpoints).endswith(f'ckpt-{trainer.steps_per_epoch}')
    assert not [name for name in os.listdir(checkpoints) if '_temp' in name]
  finally:
    subprocess.run(['umount', str(disk)], check=False)


def test_a_stop_request_is_honoured_at_the_end_of_a_short_epoch(digits_split, make_config,
                                                                tmp_path):
  config = make_config(steps_per_loop=50, epochs=3)
  checkpoints = str(tmp_path / 'checkpoints')
  trainer = Trainer(config, digits_split, make_strategy('default'), checkpoints,
                    log=lambda line: None)
  with pytest.raises(Preempted, match='stopped after epoch 1 of 3; a checkpoint is saved'):
    trainer.train(stop_requested=lambda: True)
  assert tf.train.latest_checkpoint(checkpoints).endswith(f'ckpt-{trainer.steps_per_epoch}')
