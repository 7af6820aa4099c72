"""Faults a real run meets, through the command line: a scheduler's SIGTERM mid-epoch, a closed
terminal, a second process on the same workdir, a workdir that is a file. Each case checks the
exit status, the one line said, and that nothing earlier changed. Damaged checkpoints and a full
disk are tested in process (test_loop.py, test_evaluation.py): the logic is the library's, and
each TensorFlow process costs seconds to start. For the same reason the refused commands here run as
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One step per traced call, so that a stop is seen after each of the 9 steps of an epoch. The loop
# handles a stop whatever the task, and these runs are stopped before their only evaluation (the
# last epoch's): without rotation and evaluation an epoch costs a third as much.
TINY = ['--dataset=digits', '--holdout=5', '--depth=10', '--width=1', '--batch_size=128',
        '--aux=none', '--eval_every=0', '--steps_per_loop=1']
STOPPED = re.compile(r'tfanom\.train: (\w+): stopped (?:at epoch (\d+) step ([1-8]) of 9|'
                     r'after epoch (\d+) of 10000); a checkpoint is saved: rerun the same '
                     r'command to resume')


def _env(**extra):
  """This environment as a user's shell has it: without TF_CPP_MIN_LOG_LEVEL unless `extra` sets
  it, TensorFlow's native lines are the command's to hide."""
  env = {k: v for k, v in os.environ.items() if k not in ('TF_CONFIG', 'TF_CPP_MIN_LOG_LEVEL')}
  env.update(PYTHONPATH=ROOT, **extra)
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


def _start(args, stdout=subprocess.PIPE, **env):
  """`python -m tfanom.train ARGS` as a process of its own, its output piped unless `stdout`, in
  this environment with `env` added.

  It starts with SIGHUP's default action, as a command typed in a terminal does: when the tests
  themselves run under `nohup`, the ignored SIGHUP would be inherited, and training leaves an
  ignored SIGHUP ignored (so that it outlives its terminal)."""
  process = subprocess.Popen([sys.executable, '-m', 'tfanom.train', *args], cwd=ROOT,
                             env=_env(**env), text=True, stdout=stdout, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
  _started.append(process)
  return process


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


def _stopped(process, number, workdir):
  """Sends signal `number` to a training process; checks its exit, its one line and the
  checkpoint it saved, numbered by global step; returns the line's epoch and step (0 when it
  stopped after the epoch) and that checkpoint."""
  process.send_signal(number)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + number, stderr
  line = _one_line(stderr)
  stopped = STOPPED.fullmatch(line)
  assert stopped and stopped[1] == signal.Signals(number).name, line
  epoch, step = (int(stopped[2]), int(stopped[3])) if stopped[2] else (int(stopped[4]), 0)
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  # The stop's own checkpoint: within the epoch at its step, or at the end of the epoch.
  assert latest.endswith(f'ckpt-{9 * (epoch - 1) + step}' if step else f'ckpt-{9 * epoch}')
  return epoch, step, latest


def test_stop_signals_save_a_checkpoint_and_the_next_run_resumes_at_once(tmp_path,
                                                                        train_command, capsys):
  # SIGINT, the third of tfanom.train.STOP_SIGNALS, shares this path: test_train_cli.py's
  # test_a_second_ctrl_c_interrupts_at_once checks that all three have the one handler.
  workdir = str(tmp_path / 'run')
  # More epochs than either process can train before its signal, however fast or loaded the
  # machine: only the signals end these runs.
  args = TINY + ['--epochs=10000', '--final_window=1', f'--workdir={workdir}']
  first = _start(args)
  # Its first line comes before its first step (tracing takes seconds): SIGTERM, as a scheduler
  # sends, stops it after the step it is in, mid-epoch, with a checkpoint of its own.
  assert first.stdout.readline().startswith('digits: ')
  epoch, step, latest = _stopped(first, signal.SIGTERM, workdir)
  assert epoch == 1 and step, latest

  # The lock went with the process: the next run resumes at once. It runs in a terminal that
  # then closes (writes to it fail with EIO from then on) and SIGHUP follows, as when a terminal
  # window running training is closed.
  terminal, output = pty.openpty()
  # With a user's TF_CPP_MIN_LOG_LEVEL=2, which would show cuInit's error at the first op if
  # the command did not hide it: this stderr too is one line (the quiet start-up).
  resumed = _start(args, stdout=output, TF_CPP_MIN_LOG_LEVEL='2')
  os.close(output)
  printed, deadline = '', time.time() + 240
  while not re.search(r'^resumed from .*\n', printed, re.MULTILINE):
    assert resumed.poll() is None and time.time() < deadline, (printed, resumed.communicate())
    if select.select([terminal], [], [], 0.1)[0]:
      printed += os.read(terminal, 4096).decode()
  line = next(line for line in printed.splitlines() if line.startswith('resumed from'))
  assert line == f'resumed from {latest}: 0 of 10000 epochs done, {step} of 9 steps into epoch 1'
  # A second run on the workdir is refused while this one holds it.
  assert _refused(train_command, capsys, args) == (
      f'tfanom.train: error: --workdir={workdir} is in use by another process (pid '
      f'{resumed.pid}): wait for it to finish, stop it, or use another --workdir')
  os.close(terminal)
  _, _, last = _stopped(resumed, signal.SIGHUP, workdir)
  assert int(last.rsplit('-', 1)[1]) > int(latest.rsplit('-', 1)[1])


def test_a_workdir_that_is_a_file_is_one_line(tmp_path, train_command, capsys):
  (tmp_path / 'run').write_text('a file')
  line = _refused(train_command, capsys, [*TINY, '--epochs=1', f'--workdir={tmp_path / "run"}'])
  assert line.endswith('is a file, not a folder: pass a folder for the run')
  assert (tmp_path / 'run').read_text() == 'a file'
