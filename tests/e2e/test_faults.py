"""Faults a real run meets, through the command line: stop signals on short epochs, a second
process on the same workdir, failing writes and a corrupt checkpoint. Each case checks the exit
status, the one line said, and that nothing earlier changed."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from conftest import own_lines

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Default --steps_per_loop (50) and 9 steps per epoch: a stop can only be seen at an epoch's end.
TINY = ['--dataset=digits', '--holdout=5', '--depth=10', '--width=1', '--batch_size=128']


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  env.pop('TF_CONFIG', None)
  return env


def _command(program, *args):
  return [sys.executable, '-m', program, *args]


def _run(program, *args, timeout=300):
  return subprocess.run(_command(program, *args), cwd=ROOT, capture_output=True, text=True,
                        env=_env(), timeout=timeout, check=False)


def _one_line(stderr, program='tfanom.train'):
  lines = own_lines(stderr)
  assert len(lines) == 1 and 'Traceback' not in stderr, stderr
  assert lines[0].startswith(f'{program}: '), lines
  return lines[0]


def _files(folder):
  return {path: open(path, 'rb').read() for path in sorted(
      os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)}


def _checkpoint_indexes(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  return [f for f in os.listdir(directory) if f.endswith('.index')] if os.path.isdir(
      directory) else []


@pytest.mark.parametrize('number', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_a_stop_signal_on_short_epochs_saves_and_a_second_process_is_refused(tmp_path, number):
  workdir = str(tmp_path / 'run')
  args = TINY + ['--epochs=20', '--final_window=1', f'--workdir={workdir}']
  first = subprocess.Popen(_command('tfanom.train', *args), cwd=ROOT, env=_env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  deadline = time.time() + 240
  while not _checkpoint_indexes(workdir):
    assert first.poll() is None and time.time() < deadline, first.communicate()
    time.sleep(0.1)
  if number == signal.SIGTERM:  # one case is enough for the lock, and each process costs
    second = _run('tfanom.train', *args)
    assert second.returncode == 2
    assert _one_line(second.stderr) == (
        f'tfanom.train: error: --workdir={workdir} is in use by another process (pid '
        f'{first.pid}): wait for it to finish, stop it, or use another --workdir')
  first.send_signal(number)
  _, stderr = first.communicate(timeout=120)
  assert first.returncode == 128 + number, stderr
  line = _one_line(stderr)
  assert line.startswith(f'tfanom.train: {signal.Signals(number).name}: stopped after epoch ')
  assert line.endswith('a checkpoint is saved: rerun the same command to resume')
  done = int(line.split('stopped after epoch ')[1].split()[0])
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  assert latest.endswith(f'ckpt-{9 * done}')  # the stopped epoch's own checkpoint
  if number == signal.SIGINT:
    return
  # The lock went with the process: the next run resumes at once.
  resumed = subprocess.Popen(_command('tfanom.train', *args), cwd=ROOT, env=_env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  while True:
    line = resumed.stdout.readline()
    assert line, resumed.communicate()
    if line.startswith('resumed from'):
      break
  resumed.kill()
  resumed.communicate()
  assert line.startswith(f'resumed from {latest}: {done} of 20 epochs done')


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  (tmp_path / 'run').write_text('a file')
  result = _run('tfanom.train', *TINY, '--epochs=1', f'--workdir={tmp_path / "run"}')
  assert result.returncode == 2
  assert _one_line(result.stderr).endswith('is a file, not a folder: pass a folder for the run')
  assert (tmp_path / 'run').read_text() == 'a file'


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_earlier_one(tmp_path):
  disk = tmp_path / 'disk'
  disk.mkdir()
  # Room for one checkpoint of this model (0.95 MB) and the run's small files, not for two.
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1536k', 'tmpfs', str(disk)],
                           capture_output=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f'a size-limited filesystem needs mount as root: {mounted.stderr.decode().strip()}')
  try:
    workdir = str(disk / 'run')
    result = _run('tfanom.train', *TINY, '--epochs=3', '--final_window=1', f'--workdir={workdir}')
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert 'cannot write checkpoint 18 in' in line and 'No space left on device' in line, line
    checkpoints = os.path.join(workdir, 'checkpoints')
    assert tf.train.latest_checkpoint(checkpoints).endswith('ckpt-9')
    assert not [name for name in os.listdir(checkpoints) if '_temp' in name]
  finally:
    subprocess.run(['umount', str(disk)], check=False)


def test_evaluate_and_export_call_a_corrupt_checkpoint_corrupt(tmp_path):
  workdir = str(tmp_path / 'run')
  trained = _run('tfanom.train', *TINY, '--epochs=1', '--final_window=1', f'--workdir={workdir}')
  assert trained.returncode == 0, trained.stderr
  latest = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  data, = tf.io.gfile.glob(latest + '.data-*')
  with open(data, 'r+b') as handle:
    handle.truncate(1000)
  before = _files(workdir)
  for program, *flags in (('tfanom.evaluate', f'--workdir={workdir}'),
                          ('tfanom.export', f'--workdir={workdir}',
                           f'--export_dir={tmp_path / "export" / "1"}')):
    result = _run(program, *flags)
    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr, program)
    assert f'{latest} is corrupt (' in line and 'rerun the tfanom.train command' in line, line
  assert _files(workdir) == before
  assert not os.path.exists(tmp_path / 'export')
  shutil.rmtree(workdir)
