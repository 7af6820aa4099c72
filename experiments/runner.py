"""Runs the pending runs of a sweep as subprocesses, N at a time, with one line of progress per
change. Each run's output goes to its workdir's train.log; a failed run is reported (its last
error line) while the others go on.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time

from experiments.runs import LOG_FILE, RunState
from experiments.sweeps import Run, format_value

POLL_SECONDS = 0.5
TERMINATE_SECONDS = 30
_ERROR = re.compile(r'error|exception|fatal', re.IGNORECASE)


def train_command(run: Run, workdir: str, module: str = 'tfanom.train') -> list[str]:
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

  def __init__(self, total: int, already_done: int, parallel: int, log):
    self.total, self.done, self.parallel, self.log = total, already_done, parallel, log
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


def run_all(states: list[RunState], parallel: int, total: int, command=train_command,
            log=print) -> list[Failure]:
  """Runs `states` (the pending runs of `total`) `parallel` at a time; returns the failures.

  `command(run, workdir) -> argv` builds each run's command line (tests pass a fake trainer).
  """
  progress = _Progress(total, total - len(states), parallel, log)
  env = dict(os.environ)
  if parallel > 1:
    # Runs sharing an accelerator must not each reserve all its memory.
    env.setdefault('TF_FORCE_GPU_ALLOW_GROWTH', 'true')
  pending, running, failures = list(states), {}, []
  try:
    while pending or running:
      while pending and len(running) < parallel:
        state = pending.pop(0)
        running[state.run.workdir] = _start(state, command(state.run, state.workdir), env)
        progress.running += 1
        log(progress.line(f'started {state.run.workdir}'))
      time.sleep(POLL_SECONDS)
      for workdir, (state, process, handle, log_start, started) in list(running.items()):
        returncode = process.poll()
        if returncode is None:
          continue
        handle.close()
        del running[workdir]
        progress.running -= 1
        seconds = time.time() - started
        if returncode == 0:
          progress.done += 1
          progress.durations.append(seconds)
          log(progress.line(f'done {workdir} in {_duration(seconds)}'))
        else:
          progress.failed += 1
          failure = Failure(state, returncode, last_error_line(state.log_path, log_start))
          failures.append(failure)
          log(progress.line(str(failure)))
  except KeyboardInterrupt:
    _stop(running.values())
    log(f'interrupted: stopped {len(running)} runs; rerun the same command to resume them')
    raise
  return failures


def _start(state: RunState, argv: list[str], env: dict):
  os.makedirs(state.workdir, exist_ok=True)
  # Appending keeps the logs of earlier (interrupted) attempts; this attempt's errors start here.
  handle = open(os.path.join(state.workdir, LOG_FILE), 'a')
  log_start = handle.tell()
  handle.write(f'=== {time.strftime("%Y-%m-%d %H:%M:%S")} {shlex.join(argv)}\n')
  handle.flush()
  process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL)
  return state, process, handle, log_start, time.time()


def _stop(entries) -> None:
  entries = list(entries)
  for _, process, _, _, _ in entries:
    process.terminate()
  deadline = time.time() + TERMINATE_SECONDS
  for _, process, handle, _, _ in entries:
    try:
      process.wait(max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
    handle.close()
