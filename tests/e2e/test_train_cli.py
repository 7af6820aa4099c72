"""The `python -m tfanom.train` command line, end to end and on bad flags."""

import contextlib
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest
from tests.helpers import own_lines, run_command_line

from tfanom.cli.startup import NATIVE_LOG_LINE
from tfanom.config import DATASET_DEFAULTS, TrainConfig
from tfanom.errors import UsageError
from tfanom.training import run
from tfanom.workdir import RESULTS_FILE
from tfanom.training.run import train_and_evaluate
from tfanom.workdir import CONFIG_FILE

REPO = pathlib.Path(__file__).resolve().parents[2]
# Crops of 16x16 rather than the 32x32 digits, a quarter of the arithmetic, and one replica
# rather than the test process's two devices: nothing here checks what the network learns, and
# the run took 11 s of CPU rather than 23 with both.
GOOD_FLAGS = dict(dataset='digits', holdout='3', epochs='2', depth='10', width='1',
                  final_window='2', crop_size='16', strategy='default')
RESULT_KEYS = {'dataset', 'holdout', 'aux', 'seed', 'flags', 'accuracy', 'skew', 'ap', 'history',
               'final'}

# (flags replacing or adding to GOOD_FLAGS, what the error line must say)
BAD_COMMAND_LINES = {
    'unknown_dataset': (dict(dataset='bogus'), '--dataset=bogus is unknown'),
    'holdout_out_of_range': (dict(holdout='42'), '--holdout=42 is out of range'),
    'unknown_holdout': (dict(holdout='nonexistent'), '--holdout=nonexistent is not a class'),
    'zero_epochs': (dict(epochs='0'), '--epochs=0 must be a positive integer'),
    'negative_batch': (dict(batch_size='-3'), '--batch_size=-3 must be a positive integer'),
    'missing_data_dir': (dict(dataset='cifar10', data_dir='/nonexistent'),
                         '--data_dir=/nonexistent does not exist.*`tfds build cifar10'),
    'unknown_aux': (dict(aux='bogus'), '--aux=bogus is unknown'),
}
MORE_BAD_COMMAND_LINES = {
    'negative_seed': (dict(seed='-1'), '--seed=-1 must be in 0..'),
    'bad_depth': (dict(depth='12'), '--depth=12 is not a Wide ResNet depth'),
    'unknown_rotations': (dict(rotations='bogus'), '--rotations=bogus is unknown'),
    'other_settings': (dict(epochs='3'), 'holds a run with other settings.*epochs=2 there, 3 now'),
    'imagenet_typo': (dict(dataset='imagenet1k'), '--dataset=imagenet1k is unknown'),
    'batch_not_rotatable': (dict(batch_size='130'), '--batch_size=130 must be a multiple of 4'),
    'batch_above_the_data': (dict(batch_size='4096'), '--batch_size=4096 is larger than'),
    'unknown_augment': (dict(augment='mixup'), '--augment=mixup is unknown'),
    'multiworker_without_cluster': (dict(strategy='multiworker'),
                                    'needs the TF_CONFIG environment variable'),
    'folder_without_data_dir': (dict(dataset='folder'), '--dataset=folder needs --data_dir'),
    'nan_learning_rate': (dict(learning_rate='nan'), '--learning_rate=nan must be a finite number'),
    'float_epochs': (dict(epochs='1e3'), '--epochs=1e3 must be an integer'),
    'negative_decay_factor': (dict(lr_decay_factor='-1'),
                              r'--lr_decay_factor=-1 must be in \(0, 1\]'),
    'decay_past_the_end': (dict(lr_decay_fractions='0.5,2.0'),
                           '--lr_decay_fractions=0.5,2.0 must each lie strictly between 0 and 1'),
    'decays_out_of_order': (dict(lr_decay_fractions='0.9,0.1'),
                            '--lr_decay_fractions=0.9,0.1 must be increasing'),
}


def command_line(overrides=None, **more):
  settings = {**GOOD_FLAGS, **(overrides or {}), **more}
  return [f'--{name}={value}' for name, value in settings.items()]


def cli_env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(REPO))


def workdir_files(workdir):
  """Every file of a workdir with its contents and modification time."""
  return {path: (path.read_bytes(), path.stat().st_mtime_ns)
          for path in sorted(workdir.rglob('*')) if path.is_file()}


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, train_command):
  """The command's workdir and stdout. It runs as tfanom.train's main() in this process: starting
  Python and TensorFlow again would add 6 s of CPU, and test_reliability.py's two workers run
  `python -m tfanom.train` as processes of their own to exit status 0."""
  workdir = tmp_path_factory.mktemp('cli') / 'run'
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    train_command(command_line(workdir=workdir))
  return workdir, stdout.getvalue()


def test_end_to_end(finished_run):
  workdir, stdout = finished_run
  results = json.loads((workdir / RESULTS_FILE).read_text())
  assert RESULT_KEYS <= set(results)
  assert results['dataset'] == 'digits' and results['holdout'] == dict(index=3, name='3')
  assert results['aux'] == 'rotation' and results['seed'] == 0
  assert results['flags'] == json.loads((workdir / CONFIG_FILE).read_text())
  assert results['flags']['epochs'] == 2 and results['flags']['depth'] == 10
  assert set(results['ap']) == {'msp', 'odin'}
  assert [e['epoch'] for e in results['history']] == [1, 2]
  assert results['final']['epochs'] == [1, 2]
  for values in [results, results['final'], *results['history']]:
    assert 0.0 <= values['accuracy'] <= 100.0
    assert all(0.0 < ap <= 100.0 for ap in values['ap'].values())
  # A quarter of the 183 threes are test data.
  assert results['num_examples'] == 450 and results['num_anomalies'] == 46
  assert results['skew'] == pytest.approx(100.0 * 46 / 450)
  assert results['history'][-1]['accuracy'] == results['accuracy']
  assert results['final']['accuracy'] == pytest.approx(
      (results['history'][0]['accuracy'] + results['history'][1]['accuracy']) / 2)
  # The summary table closes the output.
  lines = stdout.splitlines()
  assert lines[-4].startswith('digits, anomaly = class 3 (3), aux = rotation, seed 0, 450 test')
  assert lines[-3].split() == ['accuracy', 'AP', 'msp', 'AP', 'odin']
  assert lines[-2].split()[:2] == ['last', 'evaluation']
  assert lines[-1].startswith('mean of epochs 1-2')
  final = results['final']
  assert [float(x) for x in lines[-1].split()[-3:]] == pytest.approx(
      [final['accuracy'], final['ap']['msp'], final['ap']['odin']], abs=0.006)
  assert (workdir / 'checkpoints').is_dir()


def test_rerun_of_a_finished_workdir_does_not_retrain(finished_run):
  workdir, _ = finished_run
  before = workdir_files(workdir / 'checkpoints')
  saved = json.loads((workdir / RESULTS_FILE).read_text())
  lines = []
  config = TrainConfig(dataset='digits', holdout='3', epochs=2, depth=10, width=1,
                       final_window=2, crop_size=16, strategy='default',
                       workdir=str(workdir))  # the command line of finished_run
  results = train_and_evaluate(config, log=lines.append)
  assert json.loads(json.dumps(results)) == saved  # tuples in the returned dict are JSON lists
  assert json.loads((workdir / RESULTS_FILE).read_text()) == saved
  assert workdir_files(workdir / 'checkpoints') == before
  assert any(line.startswith('resumed from') and '2 of 2 epochs done' in line for line in lines)
  assert not any(line.startswith('epoch ') for line in lines)


@pytest.mark.parametrize('case', [*BAD_COMMAND_LINES, *MORE_BAD_COMMAND_LINES])
def test_bad_command_line(finished_run, train_command, capsys, case):
  workdir, _ = finished_run
  overrides, message = {**BAD_COMMAND_LINES, **MORE_BAD_COMMAND_LINES}[case]
  before = workdir_files(workdir)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    train_command(command_line(overrides, workdir=workdir))
  assert exit_info.value.code == 2
  stderr = capsys.readouterr().err
  assert len(stderr.splitlines()) == 1, stderr
  assert re.match(f'tfanom.train: error: .*{message}', stderr)
  assert workdir_files(workdir) == before


@pytest.fixture(scope='module')
def bad_command_processes(finished_run):
  """Every bad command line of the issue as its own process, all started at once."""
  workdir, _ = finished_run
  before = workdir_files(workdir)
  processes = {case: subprocess.Popen(
      [sys.executable, '-m', 'tfanom.train', *command_line(overrides, workdir=workdir)],
      cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for case, (overrides, _) in BAD_COMMAND_LINES.items()}
  outputs = {case: (process.communicate(timeout=600), process.returncode)
             for case, process in processes.items()}
  return outputs, before, workdir_files(workdir)


@pytest.mark.slow
@pytest.mark.parametrize('case', list(BAD_COMMAND_LINES))
def test_bad_command_line_process(bad_command_processes, case):
  outputs, before, after = bad_command_processes
  (stdout, stderr), returncode = outputs[case]
  assert returncode != 0
  assert 'Traceback' not in stderr
  lines = own_lines(stderr)
  assert len(lines) == 1, stderr
  assert re.match(f'tfanom.train: error: .*{BAD_COMMAND_LINES[case][1]}', lines[0])
  assert after == before


def test_a_bad_flag_value_exits_2_with_one_line():
  """absl's own parsing errors (a NaN, a float for an integer) are one line and exit status 2,
  as every other usage error, for every command. tfanom.train's are test_bad_command_line's
  (nan_learning_rate, float_epochs); tfanom.score's and tfanom.evaluate's run here as their mains
  in this process.

  tfanom.export runs as a process of its own, as a user types it, with --verbosity=1: TensorFlow's
  lines come back, in the format NATIVE_LOG_LINE knows, and the error line is still last. It is
  the one process started for these checks (each costs 6 s of CPU to import TensorFlow): the quiet
  start-up's other cases with real TensorFlow are checked, through the first op, by the training
  processes test_reliability.py starts anyway, with TF_CPP_MIN_LOG_LEVEL unset, 1 and 2."""
  for command, message in [(('tfanom.score', '--normal_rate=nan'),
                            '--normal_rate=nan must be a finite number'),
                           (('tfanom.evaluate', '--batch_size=1e3'),
                            '--batch_size=1e3 must be an integer')]:
    result = run_command_line(*command)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f'{command[0]}: error: {message}']
  env = {k: v for k, v in cli_env().items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  process = subprocess.run(
      [sys.executable, '-m', 'tfanom.export', '--normal_rate=nan', '--verbosity=1'], cwd=REPO,
      capture_output=True, text=True, env=env, timeout=600, check=False)
  assert process.returncode == 2, process.stderr
  # TensorFlow's lines come as they are, with continuation lines that look like no log line.
  assert own_lines(process.stderr)[-1] == (
      'tfanom.export: error: --normal_rate=nan must be a finite number'), process.stderr
  assert any(NATIVE_LOG_LINE.match(line) for line in process.stderr.splitlines()), process.stderr


def test_flags_take_the_dataset_defaults():
  config = TrainConfig(dataset='cifar10').resolved()
  assert (config.depth, config.width, config.dropout, config.epochs, config.batch_size) == (
      28, 10, 0.3, 200, 512)
  assert config.extra_groups == 0 and config.augment == 'crop_flip'
  assert TrainConfig(dataset='stl10').resolved().extra_groups == 1
  explicit = TrainConfig(dataset='cifar10', depth=16, width=8, epochs=3).resolved()
  assert (explicit.depth, explicit.width, explicit.epochs, explicit.batch_size) == (16, 8, 3, 512)
  for name in DATASET_DEFAULTS:
    members = ('n02091244', 'n02088632') if name == 'imagenet_subset' else ()
    assert TrainConfig(dataset=name, members=members).resolved().check() is None


@pytest.mark.parametrize('field,value,message', [
    ('batch_size', 6, 'multiple of 4'), ('eval_every', -1, '>= 0'),
    ('aux_norm', 'bogus', 'is unknown'), ('strategy', 'bogus', 'is unknown'),
    ('aux_weight', -0.5, '>= 0'), ('learning_rate', 0.0, 'must be positive'),
    ('seed', 2**32, 'must be in 0..'), ('steps_per_loop', 0, 'positive integer')])
def test_config_check(field, value, message):
  with pytest.raises(UsageError, match=f'--{field}={value} .*{message}'):
    TrainConfig(**{field: value}).resolved()


def test_a_second_ctrl_c_interrupts_at_once(tmp_path, train_command, monkeypatch):
  """The first SIGINT asks training to stop after its checkpoint; a second one interrupts.

  SIGTERM and SIGHUP, the other stop signals, have the same handler: test_reliability.py stops a
  run with SIGTERM, and checks its exit status and its checkpoint, which the others' stops share."""
  from tfanom.train import STOP_SIGNALS  # pylint: disable=g-import-not-at-top
  asked = []

  def training(config, log, stop_requested):
    asked.append({signal.getsignal(number) for number in STOP_SIGNALS})
    os.kill(os.getpid(), signal.SIGINT)
    asked.append(stop_requested())
    os.kill(os.getpid(), signal.SIGINT)
    asked.append('not interrupted')

  monkeypatch.setattr(run, 'train_and_evaluate', training)
  # A terminal's SIGHUP: under nohup the tests inherit it ignored, which training leaves so.
  hangup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
  try:
    with pytest.raises(KeyboardInterrupt):
      train_command(['--dataset=digits', f'--workdir={tmp_path}'])
  finally:
    signal.signal(signal.SIGHUP, hangup)
  handlers, *stops = asked
  assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
  assert len(handlers) == 1 and callable(*handlers), handlers  # one handler, none SIG_DFL
  assert stops == [True]
