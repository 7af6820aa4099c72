"""Shared set-up: two logical CPU devices (so MirroredStrategy runs 2 replicas), the digits data
and the trained and exported digits models, built once per session."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Under pytest-xdist (`-n 2`) two workers share the machine's cores: one intra-op thread each, for
# them and the processes they start, rather than a pool per worker as wide as the machine. On the
# idle 2-core machine the suite took 7 min 15 s and 729 s of CPU so, against 8 min 56 s and 891 s.
if os.environ.get('PYTEST_XDIST_WORKER'):
  os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')

import fcntl  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import config as tf_config  # noqa: E402

# Must happen before TensorFlow initialises its devices, i.e. before any op runs.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from tfanom.data.holdout import make_holdout  # noqa: E402
from tfanom.data.sources import load_digits  # noqa: E402
from tfanom.training.run import train_and_evaluate  # noqa: E402
from tfanom.workdir import RESULTS_FILE  # noqa: E402

from tests.helpers import HOLDOUT, run_command_line, run_train_command, tiny_config  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaked_op_determinism():
  """Op determinism, once enabled (a --deterministic run in this process), is process-wide: it
  would make later tests' XLA steps on the fast network fail (no deterministic max-pooling
  gradient), depending on which tests share a worker."""
  yield
  tf_config.disable_op_determinism()


@pytest.fixture(scope='session')
def digits():
  return load_digits()


@pytest.fixture(scope='session')
def digits_split(digits):
  return make_holdout(digits, HOLDOUT)


@pytest.fixture(scope='session')
def make_config():
  return tiny_config


@pytest.fixture(scope='session')
def train_command():
  return run_train_command


def built_once(tmp_path_factory, name, build):
  """The folder `name` made by `build(folder)` once per test session: under pytest-xdist the first
  worker to take the lock builds it in the workers' common temporary folder, the others wait for
  it and reuse it."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # each worker's base folder is one level below the session's
  folder, done = root / name, root / f'{name}.done'
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir()
      build(folder)
      done.touch()
  return folder


def train_and_export(folder, **settings):
  """Trains a tiny digits run in FOLDER/run and exports it with `tfanom.export` to
  FOLDER/models/digits/1, keeping the command's output in FOLDER/export.txt."""
  workdir = folder / 'run'
  train_and_evaluate(tiny_config(workdir=str(workdir), **settings), log=lambda line: None)
  export_dir = folder / 'models' / 'digits' / '1'
  result = run_command_line('tfanom.export', f'--workdir={workdir}', f'--export_dir={export_dir}')
  assert result.returncode == 0, result.stderr
  (folder / 'export.txt').write_text(result.stdout)


def exported_run(tmp_path_factory, name, **settings):
  folder = built_once(tmp_path_factory, name, lambda f: train_and_export(f, **settings))
  return dict(workdir=folder / 'run', export_dir=folder / 'models' / 'digits' / '1',
              results=json.loads((folder / 'run' / RESULTS_FILE).read_text()),
              stdout=(folder / 'export.txt').read_text())


# Trained models shared by every test file of a session. Tests must not change them: a test that
# writes into a workdir copies it. No test of them checks what the network learns, so they train
# one epoch on the central 16x16 crops of the 32x32 digits (the crop is what the export and
# tfanom.score's gallery must apply): training and exporting the rotation run took 19.5 s of
# CPU, against 31 s for two epochs of whole images, and each evaluation of it 3.5 s against 5.3.
SHARED_RUN = dict(epochs=1, crop_size=16)


@pytest.fixture(scope='session')
def digits_export(tmp_path_factory):
  """A rotation run with a validation split (which calibrates the export), and its export."""
  return exported_run(tmp_path_factory, 'digits_export', validation=True, **SHARED_RUN)


@pytest.fixture(scope='session')
def digits_export_without_aux(tmp_path_factory):
  """An --aux=none run (no rotation head) without a validation split, and its export."""
  return exported_run(tmp_path_factory, 'digits_export_without_aux', aux='none', **SHARED_RUN)
