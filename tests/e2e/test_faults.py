"""Faults a real run meets, through the command line: a stop signal on short epochs, a closed
terminal, a second process on the same workdir, a workdir that is a file. Each case checks the exit status, the one
line said, and that nothing earlier changed. Damaged checkpoints and a full disk are tested in
process (test_loop.py, test_evaluation.py): the logic is the library's, and each TensorFlow
process costs seconds to start. For the same reason the refused commands here run as
tfanom.train's main() in the test's process (the `train_command` fixture); the runs that are
signalled or resumed are processes of their own."""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from tests.helpers import own_lines

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Default --steps_per_loop (50) and 9 steps per epoch: a stop can only be seen at an epoch's end.
# The loop handles a stop whatever the task, and these runs are stopped before their only
# evaluation (the last epoch's): without rotation and evaluation an epoch costs a third as much.
TINY = ['--dataset=digits', '--holdout=5', '--depth=10', '--width=1', '--batch_size=128',
        '--aux=none', '--eval_every=0']


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  env.pop('TF_CONFIG', None)
  return env


_started = []


@pytest.fixture(autouse=True)
def no_run_outlives_its_test():
  """A failed test leaves no training behind (these runs have 10000 epochs)."""
  yield
  while _started:
    process = _started.pop()
    if process.poll() is None:
      process.kill()
      process.communicate()


def _start(args, stdout=subprocess.PIPE):
  """`python -m tfanom.train ARGS` as a process of its own, its output piped unless `stdout`.

  It starts with SIGHUP's default action, as a command typed in a terminal does: when the tests
  themselves run under `nohup`, the ignored SIGHUP would be inherited, and training leaves an
  ignored SIGHUP ignored (so that it outlives its terminal)."""
  process = subprocess.Popen([sys.executable, '-m', 'tfanom.train', *args], cwd=ROOT,
                             env=_env(), text=True, stdout=stdout, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
  _started.append(process)
  return process


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


def _wait_for_a_checkpoint(process, workdir):
  deadline = time.time() + 240
  while not _checkpoint_indexes(workdir):
    assert process.poll() is None and time.time() < deadline, process.communicate()
    time.sleep(0.1)


def _stopped_after_an_epoch(process, number, workdir):
  """Sends signal `number` to a training process with short epochs; checks its exit, its one
  line and the checkpoint it saved; returns the epochs done and that checkpoint."""
  process.send_signal(number)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + number, stderr
  line = _one_line(stderr)
  assert line.startswith(f'tfanom.train: {signal.Signals(number).name}: stopped after epoch ')
  assert line.endswith('a checkpoint is saved: rerun the same command to resume')
  done = int(line.split('stopped after epoch ')[1].split()[0])
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  assert latest.endswith(f'ckpt-{9 * done}')  # the stopped epoch's own checkpoint
  return done, latest


def test_stop_requests_save_a_checkpoint_and_the_next_run_resumes_at_once(tmp_path,
                                                                         train_command, capsys):
  # SIGTERM's exit (143) is checked in test_reliability.py; both signals share this path.
  workdir = str(tmp_path / 'run')
  # More epochs than either process can train before its signal, however fast or loaded the
  # machine: only the signals end these runs.
  args = TINY + ['--epochs=10000', '--final_window=1', f'--workdir={workdir}']
  first = _start(args)
  _wait_for_a_checkpoint(first, workdir)
  assert _refused(train_command, capsys, args) == (
      f'tfanom.train: error: --workdir={workdir} is in use by another process (pid '
      f'{first.pid}): wait for it to finish, stop it, or use another --workdir')
  done, latest = _stopped_after_an_epoch(first, signal.SIGINT, workdir)

  # The lock went with the process: the next run resumes at once. It runs in a terminal that
  # then closes (writes to it fail with EIO from then on) and SIGHUP follows, as when a terminal
  # window running training is closed.
  terminal, output = pty.openpty()
  resumed = _start(args, stdout=output)
  os.close(output)
  printed, deadline = '', time.time() + 240
  while not re.search(r'^resumed from .*\n', printed, re.MULTILINE):
    assert resumed.poll() is None and time.time() < deadline, (printed, resumed.communicate())
    if select.select([terminal], [], [], 0.1)[0]:
      printed += os.read(terminal, 4096).decode()
  line = next(line for line in printed.splitlines() if line.startswith('resumed from'))
  assert line.startswith(f'resumed from {latest}: {done} of 10000 epochs done')
  os.close(terminal)
  _stopped_after_an_epoch(resumed, signal.SIGHUP, workdir)


def test_a_workdir_that_is_a_file_is_one_line(tmp_path, train_command, capsys):
  (tmp_path / 'run').write_text('a file')
  line = _refused(train_command, capsys, [*TINY, '--epochs=1', f'--workdir={tmp_path / "run"}'])
  assert line.endswith('is a file, not a folder: pass a folder for the run')
  assert (tmp_path / 'run').read_text() == 'a file'
