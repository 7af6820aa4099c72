"""Runs the pending runs of a sweep as subprocesses, N at a time, with one line of progress per
change. Each run's output goes to its workdir's train.log; a failed run is reported (its last
error line) while the others go on.

A sweep holds the lock of a run's train.log while the run trains
(`tfanom.workdir.lock_exclusively`), so a second sweep on the same root waits for the runs the
first is training instead of starting them again, and counts those the first finishes as
complete.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time

from .sweep_state import RunState
from .named_sweeps import SweepRun
from tfanom.config import format_value
from tfanom.workdir import lock_exclusively

POLL_SECONDS = 0.5
TERMINATE_SECONDS = 30
_ERROR = re.compile(r'error|exception|fatal', re.IGNORECASE)


def train_command(run: SweepRun, workdir: str, module: str = 'tfanom.train') -> list[str]:
  """`python -m tfanom.train` with the run's settings; rerunning it resumes from checkpoints."""
  return [sys.executable, '-m', module, f'--workdir={workdir}',
          *(f'--{key}={format_value(value)}' for key, value in run.settings.items())]


@dataclasses.dataclass
class Failure:
  state: RunState
  returncode: int
  error_line: str

  def __str__(self):
    return (f'FAILED {self.state.run.workdir} (exit {self.returncode}): {self.error_line} '
            f'[log: {self.state.log_path}]')


def last_error_line(log_path: str, start: int = 0) -> str:
  """The last line of this attempt's log that names an error, else its last line."""
  try:
    with open(log_path, errors='replace') as handle:
      handle.seek(start)
      lines = [line.strip() for line in handle if line.strip()]
  except OSError as error:
    return f'no log ({error})'
  errors = [line for line in lines if _ERROR.search(line)]
  return (errors or lines or ['no output'])[-1]


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


class _Progress:
  """done / running / failed / left, elapsed, and time left from the mean duration so far."""

  def __init__(self, total: int, already_done: int, parallel: int):
    self.total, self.done, self.parallel = total, already_done, parallel
    self.running = self.failed = 0
    self.durations = []
    self.start = time.time()

  def line(self, event: str) -> str:
    left = self.total - self.done - self.running - self.failed
    elapsed = time.time() - self.start
    if self.durations:
      mean = sum(self.durations) / len(self.durations)
      eta = f'~{_duration(mean * (left + self.running / 2) / self.parallel)} left'
    else:
      eta = 'time left unknown yet'
    return (f'[{self.done}/{self.total} done, {self.running} running, {self.failed} failed, '
            f'{left} left | {_duration(elapsed)} elapsed, {eta}] {event}')


@dataclasses.dataclass
class _Running:
  state: RunState
  process: subprocess.Popen
  log: object  # the open train.log
  log_start: int  # where this attempt's output starts in it
  started: float

  @classmethod
  def start(cls, state: RunState, log, argv: list[str], env: dict) -> '_Running':
    """Starts the run, its output appended to `log`, the run's train.log this sweep holds."""
    log_start = log.tell()
    log.write(f'=== {time.strftime("%Y-%m-%d %H:%M:%S")} {shlex.join(argv)}\n')
    log.flush()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                               stdin=subprocess.DEVNULL)
    return cls(state, process, log, log_start, time.time())


def _claim(state: RunState):
  """The run's train.log, open for appending and locked by this sweep; None while another sweep
  holds it. The run's process inherits the lock with the file, so it lasts until both end."""
  os.makedirs(state.workdir, exist_ok=True)
  # Appending keeps the logs of earlier (interrupted) attempts.
  log = open(state.log_path, 'a')
  if lock_exclusively(log):
    return log
  log.close()
  return None


def run_all(states: list[RunState], parallel: int, total: int, command=train_command,
            log=print) -> list[Failure]:
  """Runs `states` (the pending runs of `total`) `parallel` at a time; returns the failures.

  `command(run, workdir) -> argv` builds each run's command line (tests pass a fake trainer).
  """
  progress = _Progress(total, total - len(states), parallel)
  env = dict(os.environ)
  if parallel > 1:
    # Runs sharing an accelerator must not each reserve all its memory.
    env.setdefault('TF_FORCE_GPU_ALLOW_GROWTH', 'true')
  pending, running, failures, waiting = list(states), [], [], set()
  try:
    while pending or running:
      for state in list(pending):
        if len(running) >= parallel:
          break
        claimed = _claim(state)
        if claimed is None:
          if state.workdir not in waiting:
            waiting.add(state.workdir)
            log(progress.line(f'waiting for {state.run.workdir}: another experiments.sweep is '
                              'training it'))
          continue
        pending.remove(state)
        if state.refreshed().status == 'complete':
          claimed.close()
          progress.done += 1
          log(progress.line(f'done {state.run.workdir} by another process'))
          continue
        running.append(_Running.start(state, claimed, command(state.run, state.workdir), env))
        progress.running += 1
        log(progress.line(f'started {state.run.workdir}'))
      time.sleep(POLL_SECONDS)
      for entry in [entry for entry in running if entry.process.poll() is not None]:
        running.remove(entry)
        entry.log.close()
        progress.running -= 1
        seconds = time.time() - entry.started
        if entry.process.returncode == 0:
          progress.done += 1
          progress.durations.append(seconds)
          log(progress.line(f'done {entry.state.run.workdir} in {_duration(seconds)}'))
        else:
          progress.failed += 1
          failures.append(Failure(entry.state, entry.process.returncode,
                                  last_error_line(entry.state.log_path, entry.log_start)))
          log(progress.line(str(failures[-1])))
  except KeyboardInterrupt:
    _stop(running)
    log(f'interrupted: stopped {len(running)} runs; rerun the same command to resume them')
    raise
  return failures


def _stop(running: list[_Running]) -> None:
  for entry in running:
    entry.process.terminate()
  deadline = time.time() + TERMINATE_SECONDS
  for entry in running:
    try:
      entry.process.wait(max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      entry.process.kill()
      entry.process.wait()
    entry.log.close()
