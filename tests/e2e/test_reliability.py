"""Preemption, determinism, divergence, multi-worker training and bad command lines (issue 5)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tfanom.config import TrainConfig
from tfanom.data.holdout import make_holdout
from tfanom.data.sources import load_digits
from tfanom.training.distribute import loopback_tf_configs
from tfanom.training.loop import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ['--dataset=digits', '--holdout=5', '--depth=10', '--width=1', '--dropout=0.3',
        '--batch_size=128', '--steps_per_loop=2']


def _env(**extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  env.pop('TF_CONFIG', None)
  env.update(extra)
  return env


def _train(args, **popen):
  return subprocess.Popen([sys.executable, '-m', 'tfanom.train', *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=popen.pop('env', _env()), **popen)


def _results(workdir):
  with open(os.path.join(workdir, 'results.json')) as handle:
    return json.load(handle)


def _wait_for(predicate, process, timeout=180):
  deadline = time.time() + timeout
  while not predicate():
    assert process.poll() is None, process.communicate()
    assert time.time() < deadline, 'timed out'
    time.sleep(0.1)


def _checkpoints(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(f for f in os.listdir(directory) if f.endswith('.index')) if os.path.isdir(
      directory) else []


# Crops of 16x16 rather than the 32x32 digits: a quarter of the arithmetic for these checks of
# mechanics, which need no learning (an epoch took 1.6 s of CPU rather than 5.7 after tracing).
SMALL = ['--crop_size=16']
# One tiny deterministic run, the reference of both the resumed run and the two-worker run.
DETERMINISTIC = TINY + SMALL + ['--epochs=1', '--final_window=1', '--batch_size=64',
                                '--dropout=0.0', '--deterministic']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, train_command):
  # In this process: the killed run below starts in another, so the comparison also shows that
  # --deterministic runs repeat across processes.
  workdir = tmp_path_factory.mktemp('reliability') / 'uninterrupted'
  train_command(DETERMINISTIC + ['--strategy=default', f'--workdir={workdir}'])
  return _results(workdir)


def test_sigkill_mid_epoch_then_rerun_resumes_to_the_same_metrics(tmp_path, uninterrupted,
                                                                  train_command, capsys):
  # A process killed and resumed ends as the uninterrupted one: equal metrics also show that
  # --deterministic runs repeat, and that checkpointing every 2 steps changes nothing.
  args = DETERMINISTIC + ['--strategy=default', '--checkpoint_every_steps=2']
  killed = str(tmp_path / 'killed')
  # With a user's TF_CPP_MIN_LOG_LEVEL=1, the quiet start-up's case no other process checks:
  # nothing on stderr up to the kill, past the first op's cuInit error.
  process = _train(args + [f'--workdir={killed}'], env=_env(TF_CPP_MIN_LOG_LEVEL='1'))
  # Mid-epoch: the checkpoint after step 4 of the 19 steps of the only epoch. The resume of a
  # run stopped by a signal is test_faults.py's.
  _wait_for(lambda: 'ckpt-4.index' in _checkpoints(killed), process)
  process.send_signal(signal.SIGKILL)
  _, stderr = process.communicate()
  assert process.returncode == -signal.SIGKILL
  assert stderr == ''  # the quiet start-up at level 1
  assert not os.path.exists(os.path.join(killed, 'results.json'))

  capsys.readouterr()
  train_command(args + [f'--workdir={killed}'])
  stdout = capsys.readouterr().out
  resumed = [line for line in stdout.splitlines() if line.startswith('resumed from')]
  assert resumed and '0 of 1 epochs done' in resumed[0] and 'into epoch 1' in resumed[0], stdout
  second = _results(killed)
  for key in ('accuracy', 'ap', 'final'):
    assert uninterrupted[key] == second[key], key
  assert [h['train'] for h in uninterrupted['history']] == [h['train'] for h in second['history']]


def test_nan_loss_ends_the_command_in_one_line_and_keeps_the_last_good_checkpoint(
    tmp_path, train_command, capsys, monkeypatch):
  # One run of the command line in this process: a NaN put in the class head right after the
  # first epoch's checkpoint (as a too-high --learning_rate leads to) makes the loss of epoch 2's
  # first traced call NaN. Without rotation or evaluation: neither is on this path.
  settings = dict(dataset='digits', holdout='5', depth=10, width=1, batch_size=128,
                  steps_per_loop=3, crop_size=16, epochs=3, aux='none', eval_every=0,
                  final_window=1, strategy='default', workdir=str(tmp_path))
  checkpoints = str(tmp_path / 'checkpoints')
  saved, save = [], Trainer.save

  def save_then_diverge(trainer):
    save(trainer)
    saved.append(tf.train.latest_checkpoint(checkpoints))
    kernel = trainer.model.class_head.kernel
    kernel.assign(tf.fill(kernel.shape, np.nan))

  monkeypatch.setattr(Trainer, 'save', save_then_diverge)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    train_command([f'--{name}={value}' for name, value in settings.items()])
  assert exit_info.value.code == 1
  lines = capsys.readouterr().err.splitlines()
  # 9 steps an epoch: the NaN is seen after step 3 of epoch 2.
  assert len(lines) == 1 and re.fullmatch(
      r'tfanom\.train: error: training diverged: loss nan .* by step 12 \(epoch 2\); the last '
      r'good checkpoint is kept: lower --learning_rate and rerun', lines[0]), lines
  assert len(saved) == 1 and tf.train.latest_checkpoint(checkpoints) == saved[0]
  monkeypatch.undo()
  restored = Trainer(TrainConfig(**settings).resolved(), make_holdout(load_digits(), '5'),
                     tf.distribute.get_strategy(), checkpoints, log=lambda _: None)
  assert restored.restore() == 1
  assert np.all(np.isfinite(restored.model.class_head.kernel.numpy()))


def test_two_workers_match_one_process_with_the_same_global_batch(tmp_path, uninterrupted):
  workers = [
      _train(DETERMINISTIC + ['--strategy=multiworker', f'--workdir={tmp_path / "multi"}'],
             env=_env(TF_CONFIG=tf_config))
      for tf_config in loopback_tf_configs(2)]
  outputs = [worker.communicate(timeout=300) for worker in workers]
  assert all(worker.returncode == 0 for worker in workers), outputs
  # Only the chief writes results and keeps checkpoints.
  assert sorted(os.listdir(tmp_path / 'multi' / 'checkpoints'))[0] == 'checkpoint'
  assert not [f for f in os.listdir(tmp_path / 'multi' / 'checkpoints') if 'worker' in f]
  multi = _results(tmp_path / 'multi')
  # Batch norm sees half a batch per replica, so the runs agree closely but not exactly.
  for key in ('loss', 'aux_loss'):
    assert multi['history'][0]['train'][key] == pytest.approx(
        uninterrupted['history'][0]['train'][key], rel=0.05), key


def _image_folder(root, classes=('cat', 'dog'), per_class=3, size=12):
  rng = np.random.default_rng(0)
  for split in ('train', 'test'):
    for name in classes:
      folder = root / split / name
      folder.mkdir(parents=True)
      for index in range(per_class):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        (folder / f'{index}.png').write_bytes(tf.io.encode_png(pixels).numpy())
  return root


def test_a_truncated_image_is_named_and_skip_corrupt_skips_it(tmp_path, caplog):
  from tfanom.data.sources import load_folder
  from tfanom.errors import UsageError
  root = _image_folder(tmp_path / 'images')
  broken = root / 'train' / 'dog' / '1.png'
  broken.write_bytes(broken.read_bytes()[:40])
  with pytest.raises(UsageError, match=f'{broken} is not a readable image.*--skip_corrupt'):
    load_folder(str(root), 8)
  with caplog.at_level('WARNING'):
    source = load_folder(str(root), 8, skip_corrupt=True)
  assert len(source.train) == 5 and len(source.test) == 6
  assert '--skip_corrupt: skipped 1 unreadable image' in caplog.text
  assert source.train.labels.tolist() == [0, 0, 0, 1, 1]
