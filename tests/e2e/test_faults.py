"""Faults a real run meets, through the command line: a stop signal on short epochs, a second
process on the same workdir, a workdir that is a file. Each case checks the exit status, the one
line said, and that nothing earlier changed. Damaged checkpoints and a full disk are tested in
process (test_loop.py, test_evaluation.py): the logic is the library's, and each TensorFlow
process costs seconds to start. For the same reason the refused commands here run as
tfanom.train's main() in the test's process (the `train_command` fixture); the runs that are
signalled or resumed are processes of their own."""

import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from tests.helpers import own_lines

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Default --steps_per_loop (50) and 9 steps per epoch: a stop can only be seen at an epoch's end.
TINY = ['--dataset=digits', '--holdout=5', '--depth=10', '--width=1', '--batch_size=128']


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  env.pop('TF_CONFIG', None)
  return env


def _start(args):
  """`python -m tfanom.train ARGS` as a process of its own, its output piped."""
  return subprocess.Popen([sys.executable, '-m', 'tfanom.train', *args], cwd=ROOT, env=_env(),
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _one_line(stderr):
  lines = own_lines(stderr)
  assert len(lines) == 1 and 'Traceback' not in stderr, stderr
  assert lines[0].startswith('tfanom.train: '), lines
  return lines[0]


def _refused(train_command, capsys, args):
  """The one line on stderr of `tfanom.train ARGS` run in this process, which must exit with 2."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    train_command(args)
  assert exit_info.value.code == 2
  return _one_line(capsys.readouterr().err)


def _checkpoint_indexes(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  return [f for f in os.listdir(directory) if f.endswith('.index')] if os.path.isdir(
      directory) else []


def test_sigint_on_short_epochs_saves_and_a_second_process_is_refused(tmp_path, train_command,
                                                                      capsys):
  # SIGTERM's exit (143) is checked in test_reliability.py; both signals share this path.
  workdir = str(tmp_path / 'run')
  args = TINY + ['--epochs=20', '--final_window=1', f'--workdir={workdir}']
  first = _start(args)
  deadline = time.time() + 240
  while not _checkpoint_indexes(workdir):
    assert first.poll() is None and time.time() < deadline, first.communicate()
    time.sleep(0.1)
  assert _refused(train_command, capsys, args) == (
      f'tfanom.train: error: --workdir={workdir} is in use by another process (pid '
      f'{first.pid}): wait for it to finish, stop it, or use another --workdir')
  first.send_signal(signal.SIGINT)
  _, stderr = first.communicate(timeout=120)
  assert first.returncode == 128 + signal.SIGINT, stderr
  line = _one_line(stderr)
  assert line.startswith('tfanom.train: SIGINT: stopped after epoch ')
  assert line.endswith('a checkpoint is saved: rerun the same command to resume')
  done = int(line.split('stopped after epoch ')[1].split()[0])
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  assert latest.endswith(f'ckpt-{9 * done}')  # the stopped epoch's own checkpoint
  # The lock went with the process: the next run resumes at once.
  resumed = _start(args)
  while True:
    line = resumed.stdout.readline()
    assert line, resumed.communicate()
    if line.startswith('resumed from'):
      break
  resumed.kill()
  resumed.communicate()
  assert line.startswith(f'resumed from {latest}: {done} of 20 epochs done')


def test_a_workdir_that_is_a_file_is_one_line(tmp_path, train_command, capsys):
  (tmp_path / 'run').write_text('a file')
  line = _refused(train_command, capsys, [*TINY, '--epochs=1', f'--workdir={tmp_path / "run"}'])
  assert line.endswith('is a file, not a folder: pass a folder for the run')
  assert (tmp_path / 'run').read_text() == 'a file'
