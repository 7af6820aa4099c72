"""Preemption (SIGKILL; SIGTERM in a closed terminal), a second process on a workdir,
determinism, divergence, multi-worker training and bad data."""

import json
import os
import pty
import re
import select
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
  """This environment with TF_CPP_MIN_LOG_LEVEL=3 and no TF_CONFIG, unless `extra` sets them
  (None: unset)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  env.pop('TF_CONFIG', None)
  env.update(extra)
  return {name: value for name, value in env.items() if value is not None}


def _train(args, stdout=subprocess.PIPE, env=None):
  """`python -m tfanom.train ARGS` as a process of its own, its output piped unless `stdout`."""
  return subprocess.Popen([sys.executable, '-m', 'tfanom.train', *args], cwd=ROOT, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env or _env())


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


def _one_line(stderr):
  """The one line a command says, alone on its stderr: also none of TensorFlow's native lines,
  among them the cuInit error its first op logs (the quiet start-up, test_startup.py)."""
  lines = stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('tfanom.train: '), stderr
  return lines[0]


def _refused(train_command, capsys, args):
  """The one line on stderr of `tfanom.train ARGS` run in this process, which must exit with 2."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    train_command(args)
  assert exit_info.value.code == 2
  return _one_line(capsys.readouterr().err)


def _latest_step(workdir):
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  return latest, int(latest.rsplit('-', 1)[1])


def test_sigkill_sigterm_in_a_closed_terminal_then_a_rerun_end_as_the_uninterrupted_run(
    tmp_path, uninterrupted, train_command, capsys):
  """Faults a real run meets, one after the other on one workdir, each with its exit status, what
  it says and what it keeps; the run then ends as the uninterrupted one (equal metrics also show
  that --deterministic runs repeat, across processes, and that checkpointing every 2 steps changes
  nothing). The killed and the stopped runs are processes of their own; the refused and the last
  runs are tfanom.train's main() in this process (the `train_command` fixture).

  SIGHUP and SIGINT, the other stop signals, share SIGTERM's handler and so its stop:
  test_train_cli.py's test_a_second_ctrl_c_interrupts_at_once checks that all three have it."""
  workdir = str(tmp_path / 'run')
  args = DETERMINISTIC + ['--strategy=default', '--checkpoint_every_steps=2',
                          f'--workdir={workdir}']
  # With a user's TF_CPP_MIN_LOG_LEVEL=1, which would show cuInit's error at the first op if the
  # command did not hide it (the quiet start-up): nothing on stderr up to the kill.
  killed = _train(args, env=_env(TF_CPP_MIN_LOG_LEVEL='1'))
  try:
    # Its first line comes once it holds the workdir, seconds of tracing before its first step: a
    # second run on the workdir is refused meanwhile.
    assert killed.stdout.readline().startswith('digits: ')
    assert _refused(train_command, capsys, args) == (
        f'tfanom.train: error: --workdir={workdir} is in use by another process (pid '
        f'{killed.pid}): wait for it to finish, stop it, or use another --workdir')
    # Killed mid-epoch, once it has saved the checkpoint after step 4 of the only epoch.
    _wait_for(lambda: 'ckpt-4.index' in _checkpoints(workdir), killed)
  finally:
    killed.send_signal(signal.SIGKILL)
    _, stderr = killed.communicate()
  assert killed.returncode == -signal.SIGKILL
  assert stderr == ''
  assert not os.path.exists(os.path.join(workdir, 'results.json'))
  latest, step = _latest_step(workdir)

  # The lock went with the killed process: the next run resumes at once from its last checkpoint.
  # It runs in a terminal that then closes (writes to it fail with EIO from then on), with the
  # user's TF_CPP_MIN_LOG_LEVEL unset; a scheduler's SIGTERM then stops it after the traced call
  # it is in, mid-epoch, with a checkpoint of its own.
  terminal, output = pty.openpty()
  stopped = _train(args, stdout=output, env=_env(TF_CPP_MIN_LOG_LEVEL=None))
  os.close(output)
  try:
    printed, deadline = '', time.time() + 240
    while not re.search(r'^resumed from .*\n', printed, re.MULTILINE):
      assert stopped.poll() is None and time.time() < deadline, (printed, stopped.communicate())
      if select.select([terminal], [], [], 0.1)[0]:
        printed += os.read(terminal, 4096).decode()
    line = next(line for line in printed.splitlines() if line.startswith('resumed from'))
    resumed = re.fullmatch(rf'resumed from {re.escape(latest)}: 0 of 1 epochs done, {step} of '
                           r'(\d+) steps into epoch 1', line)
    assert resumed, line
    os.close(terminal)
    stopped.send_signal(signal.SIGTERM)
    _, stderr = stopped.communicate(timeout=300)
  finally:
    if stopped.poll() is None:
      stopped.kill()
      stopped.communicate()
  assert stopped.returncode == 128 + signal.SIGTERM, stderr
  steps = int(resumed[1])
  line = _one_line(stderr)
  stop = re.fullmatch(rf'tfanom\.train: SIGTERM: stopped at epoch 1 step (\d+) of {steps}; a '
                      r'checkpoint is saved: rerun the same command to resume', line)
  assert stop and step < int(stop[1]) < steps, line
  latest, step = _latest_step(workdir)
  assert step == int(stop[1]), latest

  capsys.readouterr()
  train_command(args)
  stdout = capsys.readouterr().out
  assert f'resumed from {latest}: 0 of 1 epochs done, {step} of {steps} steps into epoch 1' in (
      stdout.splitlines()), stdout
  second = _results(workdir)
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
  # With a user's TF_CPP_MIN_LOG_LEVEL=2, which would show cuInit's error at the first op if the
  # command did not hide it (the quiet start-up): nothing on either worker's stderr.
  workers = [
      _train(DETERMINISTIC + ['--strategy=multiworker', f'--workdir={tmp_path / "multi"}'],
             env=_env(TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL='2'))
      for tf_config in loopback_tf_configs(2)]
  outputs = [worker.communicate(timeout=300) for worker in workers]
  assert all(worker.returncode == 0 for worker in workers), outputs
  assert [stderr for _, stderr in outputs] == ['', ''], outputs
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
