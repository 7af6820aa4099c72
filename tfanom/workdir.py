"""What a run's workdir holds, and the one naming scheme of workdirs.

Every file a run writes is named here. Runs of `tfanom.train`, its `--trials`, the sweeps of
`experiments.sweep` and the baselines all lay their workdirs out as
`<dataset>/holdout<h>/<aux>/seed<s>` (below `runs/` by default, below the sweep root in sweeps), so
a trial of a sweep and the same run trained alone are found in the same place.
"""

import contextlib
import dataclasses
import fcntl
import json
import os

from tfanom.config import RESUMABLE_DIFFERENCES, TrainConfig, upgrade_saved
from tfanom.errors import UsageError
from tfanom.io import write_error

RUNS_ROOT = 'runs'
CONFIG_FILE = 'config.json'  # the run's TrainConfig, written when training starts
CHECKPOINT_DIR = 'checkpoints'
UNREADABLE_DIR = 'unreadable'  # below CHECKPOINT_DIR: checkpoints that failed to restore
TENSORBOARD_DIR = 'tensorboard'
RESULTS_FILE = 'results.json'  # written by tfanom.train when the run is complete
AGGREGATE_FILE = 'aggregate.json'  # mean ± std of --trials, beside the trials' workdirs
EVAL_FILE = 'eval.json'  # tfanom.evaluate: every score's metrics
SCORES_FILE = 'scores.npz'  # tfanom.evaluate: per-example scores
FEATURE_CACHE_FILE = 'feature_stats.npz'  # training-feature statistics, per checkpoint
BASELINE_FILE = 'baseline.json'  # tfanom.baselines
LOCK_FILE = '.lock'  # held by the process training in the workdir; holds its PID


def run_path(dataset: str, holdout, aux: str, seed: int | None = None) -> str:
  """`<dataset>/holdout<h>/<aux>[/seed<s>]`: a run's place below a root of runs."""
  path = os.path.join(dataset, f'holdout{holdout}', aux)
  return path if seed is None else os.path.join(path, f'seed{seed}')


def default_workdir(config: TrainConfig) -> str:
  return os.path.join(RUNS_ROOT, run_path(config.dataset, config.holdout, config.aux, config.seed))


def trials_root(config: TrainConfig) -> str:
  """Where `--trials` puts its trials (`seed<k>` below it) and aggregate.json."""
  return config.workdir or os.path.join(RUNS_ROOT,
                                        run_path(config.dataset, config.holdout, config.aux))


def baseline_workdir(dataset: str, holdout: str, method: str) -> str:
  return os.path.join(RUNS_ROOT, run_path(dataset, holdout, f'baseline_{method}'))


def prepare(workdir: str) -> None:
  """Creates `workdir` (and its parents), or says in one line why it cannot be."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} is a file, not a folder: pass a folder for the run')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as error:
    raise UsageError(f'cannot create --workdir={workdir}: {error.strerror or error}; pass a '
                     'folder you can write') from None


def lock_exclusively(handle) -> bool:
  """Takes the operating system's exclusive lock (`flock`) on an open file without waiting: False
  when another opening of the file, in this process or another, holds it. The lock belongs to the
  opening, so it lasts while any process holds it open (a child given it as stdout included), and
  goes with the last of them however it ends."""
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  return True


@contextlib.contextmanager
def locked(workdir: str):
  """Holds an exclusive lock on WORKDIR/.lock: a second process on the same workdir is refused.

  The lock is the operating system's (`flock`), so it goes with the process that holds it, however
  that process ends: a lock file left behind never blocks a later run.
  """
  path = os.path.join(workdir, LOCK_FILE)
  try:
    handle = open(path, 'a+', encoding='utf-8')
  except OSError as error:
    raise UsageError(f'cannot write {path}: {error.strerror or error}; pass a --workdir you can '
                     'write') from None
  with handle:
    if not lock_exclusively(handle):
      handle.seek(0)
      holder = handle.read().strip() or 'unknown'
      raise UsageError(f'--workdir={workdir} is in use by another process (pid {holder}): wait '
                       'for it to finish, stop it, or use another --workdir') from None
    try:
      # Unbuffered, so that a failed write (a full disk) is reported once and closing cannot fail.
      os.ftruncate(handle.fileno(), 0)
      os.write(handle.fileno(), f'{os.getpid()}\n'.encode())
    except OSError as error:
      raise write_error(path, error) from None
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def unfinished_warning(workdir: str, checkpoint: str) -> str | None:
  """A warning line when `checkpoint`, the latest of `workdir`, may not be its run's last: a
  process holds the lock (it is training), or there is no results.json (training has not
  finished); else None."""
  reason = None
  try:
    with open(os.path.join(workdir, LOCK_FILE), encoding='utf-8') as handle:
      try:
        # A shared lock conflicts only with the exclusive one a training process holds.
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)
      except BlockingIOError:
        reason = f'is being trained by another process (pid {handle.read().strip() or "unknown"})'
  except OSError:
    pass
  if reason is None and not os.path.exists(os.path.join(workdir, RESULTS_FILE)):
    reason = f'has no {RESULTS_FILE}: its training has not finished'
  return reason and (f'warning: --workdir={workdir} {reason}; using its latest checkpoint so '
                     f'far, {os.path.basename(checkpoint)}')


def check_resumable(workdir: str, config: TrainConfig) -> None:
  """Refuses to resume a workdir whose run was started with settings that change its result."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as handle:
    saved = upgrade_saved(json.load(handle))
  current = json.loads(json.dumps(config.to_dict()))  # tuples become lists, as when saved
  # A setting the saved run predates kept its behaviour of then: its default, or upgrade_saved's
  # value where the default has changed since.
  differences = [f'{key}={saved.get(key)!r} there, {value!r} now' for key, value in current.items()
                 if key not in RESUMABLE_DIFFERENCES and key in saved and saved[key] != value]
  if differences:
    raise UsageError(f'--workdir={workdir} holds a run with other settings '
                     f'({"; ".join(differences)}): use another --workdir')


def read_config(workdir: str) -> TrainConfig:
  """The resolved TrainConfig a finished or running tfanom.train run saved in `workdir`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} does not exist: pass the workdir of a run of '
                     'python -m tfanom.train')
  if not os.path.exists(path):
    raise UsageError(f'--workdir={workdir} has no {CONFIG_FILE}: it is not a tfanom.train run '
                     '(pass the --workdir the run was trained in)')
  try:
    with open(path) as handle:
      return config_from_json(handle.read())
  except (ValueError, TypeError) as error:
    raise UsageError(f'{path} is not a readable run config ({error}): restore it, or retrain '
                     'in a new --workdir') from None


def config_from_json(text: str) -> TrainConfig:
  """The TrainConfig a run saved with `TrainConfig.to_dict` (lists back to tuples)."""
  saved = json.loads(text)
  if not isinstance(saved, dict):
    raise ValueError('expected a JSON object')
  saved = upgrade_saved(saved)
  known = {field.name for field in dataclasses.fields(TrainConfig)}
  unknown = sorted(set(saved) - known)
  if unknown:
    raise ValueError(f'settings unknown to this version of tfanom: {", ".join(unknown)}')
  return TrainConfig(**{key: tuple(value) if isinstance(value, list) else value
                        for key, value in saved.items()}).resolved()
