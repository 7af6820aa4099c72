"""A run's checkpoints: restoring with fall-back past damaged or missing ones, setting damaged ones
aside in training, refusing them in evaluation, and failed saves."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tfanom.errors import UsageError
from tfanom.models.trunk import checkpoint_variables
from tfanom.training.checkpoints import RunCheckpoint
from tfanom.training.distribute import make_strategy
from tfanom.training.loop import Trainer

from tests.helpers import first_examples


@pytest.fixture(scope='module')
def split(digits_split):
  """128 training images, two steps an epoch at the tiny config's batch of 64: checkpoints need
  steps, not learning (no test here evaluates)."""
  return first_examples(digits_split, 128, 100)


@pytest.fixture(scope='module')
def config(make_config):
  """Without the rotation task and on 16x16 crops: what a checkpoint holds does not depend on
  either, and a trainer built and trained two epochs so took 2.4 s of CPU against 6.8 s (one
  intra-op thread). Loops longer than the epochs."""
  return make_config(steps_per_loop=50, aux='none', crop_size=16)


@pytest.fixture(scope='module')
def trained_twice(split, config, tmp_path_factory):
  checkpoints = str(tmp_path_factory.mktemp('two') / 'checkpoints')
  trainer = Trainer(config, split, make_strategy('default'), checkpoints, log=lambda line: None)
  trainer.train()
  return config, checkpoints


def kept(checkpoints):
  """The kept checkpoints' path prefixes as the state file lists them, oldest first."""
  return list(tf.train.get_checkpoint_state(checkpoints).all_model_checkpoint_paths)


@pytest.fixture()
def two_checkpoints(trained_twice, tmp_path):
  """A fresh copy of a checkpoint directory holding epochs 1 and 2, and the config."""
  config, original = trained_twice
  checkpoints = str(tmp_path / 'checkpoints')
  shutil.copytree(original, checkpoints)
  state = os.path.join(checkpoints, 'checkpoint')
  with open(state) as handle:
    text = handle.read().replace(original, checkpoints)
  with open(state, 'w') as handle:
    handle.write(text)
  return config, checkpoints


def damage(path_prefix, kind):
  if kind == 'truncated_data':
    data, = tf.io.gfile.glob(path_prefix + '.data-*')
    with open(data, 'r+b') as handle:
      handle.truncate(100)
  elif kind == 'overwritten_index':
    with open(path_prefix + '.index', 'wb') as handle:
      handle.write(b'overwritten by something else')
  else:  # deleted
    for name in tf.io.gfile.glob(path_prefix + '.*'):
      os.remove(name)


def folder_contents(folder):
  return {os.path.join(root, name): open(os.path.join(root, name), 'rb').read()
          for root, _, names in os.walk(folder) for name in names}


@pytest.mark.parametrize('kind', ['truncated_data', 'overwritten_index', 'deleted'])
def test_a_damaged_or_missing_newest_checkpoint_falls_back_to_the_one_before(
    two_checkpoints, split, kind):
  config, checkpoints = two_checkpoints
  older, newest = kept(checkpoints)
  damage(newest, kind)
  lines = []
  resumed = Trainer(config, split, make_strategy('default'), checkpoints, log=lines.append)
  assert resumed.restore() == 1
  warning, resumed_line = lines
  if kind == 'deleted':
    assert warning == (f'warning: checkpoint {newest} is listed but its files are gone; trying '
                       'the one before it')
    assert not os.path.exists(os.path.join(checkpoints, 'unreadable'))
  else:
    assert warning.startswith(f'warning: checkpoint {newest} is unreadable (')
    assert warning.endswith(f'moved to {checkpoints}/unreadable, trying the one before it')
    assert tf.io.gfile.glob(os.path.join(checkpoints, 'unreadable', '*.index'))
  assert resumed_line.startswith(f'resumed from {older}: 1 of 2 epochs done')
  assert tf.train.latest_checkpoint(checkpoints) == older and kept(checkpoints) == [older]
  # What follows the fall-back does not depend on the damage: the state above is the same for
  # every kind.
  if kind == 'truncated_data':
    # Training on writes a new second checkpoint and keeps the good first one until then.
    resumed.train()
    assert resumed.evaluations == [] and int(resumed.progress.epoch.numpy()) == 2
    assert len(kept(checkpoints)) == 2 and kept(checkpoints)[0] == older


@pytest.mark.parametrize('kind', ['truncated_data', 'deleted'])
def test_evaluation_reads_the_weights_and_never_moves_a_file(two_checkpoints, split, kind):
  config, checkpoints = two_checkpoints
  older, newest = kept(checkpoints)
  damage(newest, kind)
  before = folder_contents(checkpoints)
  # The model and auxiliary head of a fresh run: evaluation builds them without optimizers.
  fresh = Trainer(config, split, make_strategy('default'))
  lines = []
  weights = RunCheckpoint(checkpoints, fresh.model, fresh.aux_task, log=lines.append)
  if kind == 'deleted':
    assert weights.restore() == older
    assert lines == [f'warning: checkpoint {newest} is listed but its files are gone; trying the '
                     'one before it']
    reader = tf.train.load_checkpoint(older)
    for index, variable in enumerate(checkpoint_variables(fresh.model)):
      np.testing.assert_array_equal(
          variable.numpy(), reader.get_tensor(f'model/{index}/.ATTRIBUTES/VARIABLE_VALUE'))
  else:
    with pytest.raises(UsageError, match=f'{newest} is corrupt .*rerun the tfanom.train command'):
      weights.restore()
  assert folder_contents(checkpoints) == before


def test_no_readable_checkpoint_is_one_line(two_checkpoints, split):
  config, checkpoints = two_checkpoints
  for path in kept(checkpoints):
    damage(path, 'truncated_data')
  resumed = Trainer(config, split, make_strategy('default'), checkpoints, log=lambda line: None)
  with pytest.raises(UsageError, match='no readable checkpoint in .*move the workdir away'):
    resumed.restore()


def test_a_failed_save_is_one_line_and_leaves_no_temporary_files(two_checkpoints, split):
  config, checkpoints = two_checkpoints
  trainer = Trainer(config, split, make_strategy('default'), checkpoints, log=lambda line: None)
  before = sorted(os.listdir(checkpoints))
  manager_save = tf.train.CheckpointManager.save

  def fail_half_way(manager, *args, **kwargs):
    os.makedirs(os.path.join(checkpoints, 'ckpt-99_temp'))  # as TensorFlow's writer leaves it
    raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')

  tf.train.CheckpointManager.save = fail_half_way
  try:
    with pytest.raises(UsageError, match=r'cannot write checkpoint \d+ in .*No space left on '
                       'device; free disk space.*the earlier checkpoints are kept'):
      trainer.save()
  finally:
    tf.train.CheckpointManager.save = manager_save
  assert sorted(os.listdir(checkpoints)) == before


def test_a_full_disk_during_a_checkpoint_keeps_the_earlier_one(split, config, tmp_path):
  disk = tmp_path / 'disk'
  disk.mkdir()
  # Room for one checkpoint of this model (0.63 MB), not for two.
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1024k', 'tmpfs', str(disk)],
                           capture_output=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f'a size-limited filesystem needs mount as root: {mounted.stderr.decode().strip()}')
  try:
    checkpoints = str(disk / 'checkpoints')
    trainer = Trainer(config, split, make_strategy('default'), checkpoints, log=lambda line: None)
    with pytest.raises(UsageError, match=f'cannot write checkpoint {2 * trainer.steps_per_epoch} '
                       'in .*No space left on device.*the earlier checkpoints are kept'):
      trainer.train()
    assert tf.train.latest_checkpoint(checkpoints).endswith(f'ckpt-{trainer.steps_per_epoch}')
    assert not [name for name in os.listdir(checkpoints) if '_temp' in name]
  finally:
    subprocess.run(['umount', str(disk)], check=False)
