"""What several test files share: the repository root, the tiny training config, running a command
line in process or as a subprocess, and reading a subprocess's own stderr lines."""

import contextlib
import dataclasses
import importlib
import io
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
from absl import flags, logging

from tfanom.cli.flags import parse_flags, program_name
from tfanom.cli.startup import NATIVE_LOG_LINE
from tfanom.config import TrainConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOLDOUT = 3  # digits class used as the anomaly throughout the tests


def tiny_config(**overrides) -> TrainConfig:
  """A WRN-10-1 run on digits that trains an epoch in a few seconds on 2 CPU cores."""
  base = TrainConfig(dataset='digits', holdout=str(HOLDOUT), depth=10, width=1, epochs=2,
                     batch_size=64, steps_per_loop=4, eval_batch_size=256, eval_every=0,
                     final_window=0, strategy='default')
  return dataclasses.replace(base, **overrides).resolved()


@contextlib.contextmanager
def _process_state_restored():
  """Restores what a command's main sets for its whole process: absl's verbosity (the commands
  hide INFO lines) and the handlers of the signals that stop training (a sweep's SIGTERM among
  them). Op determinism is restored after every test by conftest; the mixed-precision policy by
  the library itself."""
  from tfanom.train import STOP_SIGNALS  # pylint: disable=g-import-not-at-top
  verbosity = logging.get_verbosity()
  handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)
    for number, handler in handlers.items():
      signal.signal(number, handler)


def run_train_command(args):
  """Runs `python -m tfanom.train ARGS` as its main() in this process: the command's code path
  (flag parsing, one-line errors, exit status as SystemExit) without starting Python and importing
  TensorFlow again, about 5 s of CPU per run. tfanom.train's flags are the only ones defined on
  absl's global FLAGS in the test processes (the other commands run by `run_command_line` define
  theirs on a FlagValues of their own)."""
  from tfanom import train as train_cli  # pylint: disable=g-import-not-at-top
  with _process_state_restored():
    try:
      flags.FLAGS.unparse_flags()
      train_cli.main(parse_flags('tfanom.train', ['tfanom.train', *args]))
    finally:
      flags.FLAGS.unparse_flags()


def run_command_line(module_name: str, *args) -> subprocess.CompletedProcess:
  """What `python -m MODULE ARGS` returns (exit status, stdout and stderr), run in this process:
  the command's own flag parsing, checks and one-line errors, without starting Python and
  importing TensorFlow again (6-10 s of CPU per command). The command defines its flags on a
  FlagValues of its own, as the commands' flag names collide."""
  module = importlib.import_module(module_name)
  program, flag_values = program_name(module), flags.FlagValues()
  main = module.command(flag_values)
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
      _process_state_restored():
    try:
      main(parse_flags(program, [program, *args], flag_values))
      status = 0
    except SystemExit as exited:
      status = 0 if exited.code is None else exited.code
  return subprocess.CompletedProcess([sys.executable, '-m', module_name, *args], status,
                                     stdout.getvalue(), stderr.getvalue())


def python_command(*args):
  """`python ARGS` from the repository root, without TensorFlow's start-up log lines."""
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), check=False)


def own_lines(stderr: str) -> list[str]:
  """A subprocess's stderr without TensorFlow's native log lines."""
  return [line for line in stderr.splitlines() if line and not NATIVE_LOG_LINE.match(line)]


def first_examples(split, train: int | None = None, evaluation: int | None = None):
  """`split` cut to its first TRAIN training images and first EVALUATION evaluation examples (None:
  all of them): for tests of mechanics (resuming, checkpoints, trials), which need a few steps,
  not digits' 19 per epoch. Digits' evaluation order mixes the classes, so a cut keeps anomalies
  among them."""
  def first(images, count):
    return images if count is None else images.select(np.arange(len(images)) < count)
  return dataclasses.replace(split, train=first(split.train, train),
                             evaluation=first(split.evaluation, evaluation))


def half_side(split):
  """`split` with every other row and column of its images (digits at 16x16, which the fast
  network still takes): a quarter of what every convolution costs, for tests of mechanics and of
  arithmetic, which do not need the images' detail. Keeps the split's mean and std."""
  def halved(images):
    return dataclasses.replace(images, images=np.ascontiguousarray(images.images[:, ::2, ::2]))
  return dataclasses.replace(split, train=halved(split.train), evaluation=halved(split.evaluation))
