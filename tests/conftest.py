"""Shared set-up: two logical CPU devices (so MirroredStrategy runs 2 replicas) and tiny configs."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Under pytest-xdist (`-n 2`) two workers share the machine's cores: one intra-op thread each, for
# them and the processes they start, rather than a pool per worker as wide as the machine. On the
# idle 2-core machine the suite took 7 min 15 s and 729 s of CPU so, against 8 min 56 s and 891 s.
if os.environ.get('PYTEST_XDIST_WORKER'):
  os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')

import dataclasses  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import config as tf_config  # noqa: E402

# Must happen before TensorFlow initialises its devices, i.e. before any op runs.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from tfanom.config import TrainConfig  # noqa: E402
from tfanom.data.holdout import make_holdout  # noqa: E402
from tfanom.data.sources import load_digits  # noqa: E402

HOLDOUT = 3  # digits class used as the anomaly throughout the tests


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


def tiny_config(**overrides) -> TrainConfig:
  """A WRN-10-1 run on digits that trains an epoch in a few seconds on 2 CPU cores."""
  base = TrainConfig(dataset='digits', holdout=str(HOLDOUT), depth=10, width=1, epochs=2,
                     batch_size=64, steps_per_loop=4, eval_batch_size=256, eval_every=0,
                     final_window=0, strategy='default')
  return dataclasses.replace(base, **overrides).resolved()


@pytest.fixture(scope='session')
def make_config():
  return tiny_config


def run_train_command(args):
  """Runs `python -m tfanom.train ARGS` as its main() in this process: the command's code path
  (flag parsing, one-line errors, exit status as SystemExit) without starting Python and importing
  TensorFlow again, about 5 s of CPU per run. Only tfanom.train's flags are defined in the test
  processes; other commands run as subprocesses, as their flags share names with these."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tfanom.cli import train as train_cli  # pylint: disable=g-import-not-at-top
  from tfanom.cli.flags import parse_flags  # pylint: disable=g-import-not-at-top
  handlers = {number: signal.getsignal(number) for number in train_cli.STOP_SIGNALS}
  try:
    flags.FLAGS.unparse_flags()
    train_cli.main(parse_flags('tfanom.train', ['tfanom.train', *args]))
  finally:
    flags.FLAGS.unparse_flags()
    for number, handler in handlers.items():  # main() installs its stop-request handlers
      signal.signal(number, handler)


@pytest.fixture(scope='session')
def train_command():
  return run_train_command


# TensorFlow's native logger writes these to stderr whatever TF_CPP_MIN_LOG_LEVEL says, and absl
# logs INFO lines in the same format; the programs' own messages never look like this.
NATIVE_LOG_LINE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog\(\) is called'
                             r'|[IWEF]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] )')


def own_lines(stderr: str) -> list[str]:
  """A subprocess's stderr without TensorFlow's native log lines."""
  return [line for line in stderr.splitlines() if line and not NATIVE_LOG_LINE.match(line)]
