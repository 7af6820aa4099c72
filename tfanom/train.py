r"""Trains one hold-out-class anomaly detector and reports its average precision.

  python -m tfanom.train                                  # digits, a few minutes on a CPU
  python -m tfanom.train --dataset=cifar10 --holdout=cat --data_dir=~/tensorflow_datasets
  python -m tfanom.train --dataset=imagenet_spider --holdout=tarantula --data_dir=~/ILSVRC2012 \
      --trials=3

Flags left unset take the paper's defaults for the dataset (see tfanom/config.py, where every flag
is declared). Running the same command again resumes from the last checkpoint in --workdir.
"""

import contextlib
import errno
import signal
import sys
import threading

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from absl import app, flags, logging  # noqa: E402  pylint: disable=g-import-not-at-top

from tfanom.cli.flags import config_from_flags, define_flags, run_command  # noqa: E402
from tfanom.config import TrainConfig  # noqa: E402

_SETTINGS = define_flags(TrainConfig)
_TRIALS = flags.DEFINE_integer('trials', None, 'Run N trials with seeds --seed..--seed+N-1 in '
                               'WORKDIR/seed<k> and write WORKDIR/aggregate.json (mean ± std).')
# Signals that stop training after a checkpoint rather than at once.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # TensorFlow's own INFO lines (one per checkpoint save) would drown the progress lines.
  logging.set_verbosity(logging.WARNING)
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  from tfanom.training import loop, run  # pylint: disable=g-import-not-at-top
  # Schedulers send SIGTERM before they kill, Ctrl-C sends SIGINT and a closed terminal SIGHUP:
  # finish the current traced call, save, and stop. A second Ctrl-C interrupts at once.
  terminate = threading.Event()
  received = []

  def request_stop(number, _):
    if terminate.is_set() and number == signal.SIGINT:
      raise KeyboardInterrupt
    received.append(number)
    terminate.set()

  for number in STOP_SIGNALS:
    # Under nohup SIGHUP is ignored, so that the run outlives its terminal: leave it so.
    if number != signal.SIGHUP or signal.getsignal(number) is not signal.SIG_IGN:
      signal.signal(number, request_stop)

  def log(line):
    try:
      print(line, flush=True)
    except OSError as error:
      # A closed terminal fails every write with EIO (its SIGHUP may be handled only after): the
      # line is lost, training goes on to its checkpoint.
      if error.errno != errno.EIO:
        raise

  config = config_from_flags(TrainConfig, _SETTINGS)
  with reported_as_one_line('tfanom.train'):
    try:
      if _TRIALS.value is None:
        run.train_and_evaluate(config, log=log, stop_requested=terminate.is_set)
      else:
        run.run_trials(config, _TRIALS.value, log=log, stop_requested=terminate.is_set)
    except loop.Preempted as stop:
      number = received[0] if received else signal.SIGTERM
      with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
        print(f'tfanom.train: {signal.Signals(number).name}: {stop}', file=sys.stderr)
      sys.exit(128 + number)
    except loop.TrainingDiverged as error:
      # A run that failed, not a command line to fix: exit status 1.
      print(f'tfanom.train: error: {error}', file=sys.stderr)
      sys.exit(1)


def run_main():
  """The `tfanom-train` console script."""
  run_command(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
