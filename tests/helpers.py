"""What several test files share: the repository root, the tiny training config, running a command
line in process or as a subprocess, and reading a subprocess's own stderr lines."""

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys

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


def run_train_command(args):
  """Runs `python -m tfanom.train ARGS` as its main() in this process: the command's code path
  (flag parsing, one-line errors, exit status as SystemExit) without starting Python and importing
  TensorFlow again, about 5 s of CPU per run. Only tfanom.train's flags are defined in the test
  processes; other commands run as subprocesses, as their flags share names with these."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tfanom import train as train_cli  # pylint: disable=g-import-not-at-top
  from tfanom.cli.flags import parse_flags  # pylint: disable=g-import-not-at-top
  handlers = {number: signal.getsignal(number) for number in train_cli.STOP_SIGNALS}
  try:
    flags.FLAGS.unparse_flags()
    train_cli.main(parse_flags('tfanom.train', ['tfanom.train', *args]))
  finally:
    flags.FLAGS.unparse_flags()
    for number, handler in handlers.items():  # main() installs its stop-request handlers
      signal.signal(number, handler)


def python_command(*args):
  """`python ARGS` from the repository root, without TensorFlow's start-up log lines."""
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), check=False)


def own_lines(stderr: str) -> list[str]:
  """A subprocess's stderr without TensorFlow's native log lines."""
  return [line for line in stderr.splitlines() if line and not NATIVE_LOG_LINE.match(line)]
