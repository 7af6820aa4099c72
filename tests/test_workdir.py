"""One naming scheme for the workdirs of runs, trials, sweeps and baselines."""

import dataclasses
import errno
import os
import subprocess
import sys

import pytest

from experiments import named_sweeps
from tfanom.baselines import BaselineConfig
from tfanom.config import TrainConfig
from tfanom.training.run import trial_configs
from tfanom.errors import UsageError
from tfanom.workdir import (LOCK_FILE, RESULTS_FILE, baseline_workdir, default_workdir,
                            lock_exclusively, locked, prepare, run_path, trials_root,
                            unfinished_warning)


def test_a_trial_lives_where_the_same_run_alone_and_in_a_sweep_lives():
  config = TrainConfig(dataset='cifar10', holdout='3', aux='rotation', seed=1)
  assert default_workdir(config) == os.path.join('runs', 'cifar10', 'holdout3', 'rotation',
                                                 'seed1')
  trials = trial_configs(dataclasses.replace(config, seed=0), 3)
  assert [t.workdir for t in trials] == [
      default_workdir(dataclasses.replace(config, seed=s)) for s in (0, 1, 2)]
  assert trials_root(config) == os.path.dirname(default_workdir(config))
  sweep_run = next(run for run in named_sweeps.expand('table3') if run.settings['holdout'] == '3'
                   and run.settings['aux'] == 'rotation' and run.settings['seed'] == 1)
  assert os.path.join('runs', sweep_run.workdir) == default_workdir(config)


def test_baselines_share_the_scheme():
  config = BaselineConfig(dataset='cifar10', holdout='all', method='edge_energy')
  assert baseline_workdir(config.dataset, config.holdout, config.method) == os.path.join(
      'runs', run_path('cifar10', 'all', 'baseline_edge_energy'))


def test_a_locked_workdir_refuses_a_second_holder_and_names_the_first(tmp_path):
  with locked(str(tmp_path)):
    assert (tmp_path / LOCK_FILE).read_text() == f'{os.getpid()}\n'
    # flock locks belong to an open file: a second opening conflicts even in this process.
    with pytest.raises(UsageError, match=f'is in use by another process \\(pid {os.getpid()}\\)'):
      with locked(str(tmp_path)):
        pass
  with locked(str(tmp_path)):  # released: free again
    pass


def test_a_stale_lock_file_never_blocks(tmp_path):
  (tmp_path / LOCK_FILE).write_text('999999\n')  # left by a process that died
  with locked(str(tmp_path)):
    assert (tmp_path / LOCK_FILE).read_text() == f'{os.getpid()}\n'


def test_an_exclusive_lock_lasts_while_a_child_holds_the_file_open(tmp_path):
  """What a sweep relies on for a run's train.log: the run's process, given the locked log as its
  output, keeps the lock after the sweep closes its own copy, and frees it when it ends."""
  path = tmp_path / 'train.log'
  sweep = open(path, 'a')
  assert lock_exclusively(sweep)
  run = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdout=sweep,
                         stdin=subprocess.PIPE)
  sweep.close()
  with open(path, 'a') as other:
    assert not lock_exclusively(other)
  run.communicate('')
  with open(path, 'a') as other:
    assert lock_exclusively(other)


def test_prepare_refuses_a_file_and_creates_folders(tmp_path):
  (tmp_path / 'taken').write_text('a file')
  with pytest.raises(UsageError, match='is a file, not a folder'):
    prepare(str(tmp_path / 'taken'))
  with pytest.raises(UsageError, match='cannot create --workdir=.*taken/run'):
    prepare(str(tmp_path / 'taken' / 'run'))
  prepare(str(tmp_path / 'new' / 'run'))
  assert (tmp_path / 'new' / 'run').is_dir()


def test_a_full_disk_when_taking_the_lock_is_one_line(tmp_path, monkeypatch):
  def full_disk(descriptor, data):
    raise OSError(errno.ENOSPC, 'No space left on device')

  with monkeypatch.context() as patched:
    patched.setattr(os, 'write', full_disk)
    with pytest.raises(UsageError) as raised:
      with locked(str(tmp_path)):
        raise AssertionError('ran without its lock file written')
  assert str(raised.value).startswith(f'cannot write {tmp_path / LOCK_FILE}: No space left on '
                                      'device; ')
  with locked(str(tmp_path)):  # the failed attempt let go of the lock
    pass


def test_an_unfinished_or_running_workdir_is_named(tmp_path):
  checkpoint = str(tmp_path / 'checkpoints' / 'ckpt-3')
  assert unfinished_warning(str(tmp_path), checkpoint) == (
      f'warning: --workdir={tmp_path} has no results.json: its training has not finished; using '
      'its latest checkpoint so far, ckpt-3')
  (tmp_path / RESULTS_FILE).write_text('{}')
  assert unfinished_warning(str(tmp_path), checkpoint) is None
  with locked(str(tmp_path)):  # another open file description: as another process's lock
    assert unfinished_warning(str(tmp_path), checkpoint) == (
        f'warning: --workdir={tmp_path} is being trained by another process (pid {os.getpid()}); '
        'using its latest checkpoint so far, ckpt-3')
  assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, RESULTS_FILE]
