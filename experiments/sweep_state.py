"""What a sweep root holds: its definition (ROOT/sweep.json) and the state of each run's workdir.

The runner, the report and the plots all read a root through this module, so they agree on
which runs are complete.
"""

import dataclasses
import json
import os

from .named_sweeps import SweepRun
from tfanom.config import RESUMABLE_DIFFERENCES, format_value
from tfanom.errors import UsageError
from tfanom.io import write_json_atomic
from tfanom.workdir import RESULTS_FILE

SWEEP_FILE = 'sweep.json'
LOG_FILE = 'train.log'
# A results.json without any of these was not written by a finished tfanom.train run.
RESULT_KEYS = ('dataset', 'holdout', 'aux', 'seed', 'flags', 'accuracy', 'skew', 'ap', 'final',
               'history')


def definition(sweep: str, runs: list[SweepRun]) -> dict:
  """The record of a sweep: its runs' settings, less those that do not change what a run computes
  (data_dir, strategy, ...), which may differ between machines resuming the same sweep."""
  return json.loads(json.dumps(dict(
      sweep=sweep,
      runs=[dict(workdir=run.workdir,
                 settings={k: v for k, v in run.settings.items()
                           if k not in RESUMABLE_DIFFERENCES})
            for run in runs])))


def record_definition(root: str, sweep: str, runs: list[SweepRun]) -> None:
  """Writes ROOT/sweep.json, or checks that the one there describes the same sweep."""
  path = os.path.join(root, SWEEP_FILE)
  current = definition(sweep, runs)
  if not os.path.exists(path):
    write_json_atomic(path, current)
    return
  differences = _definition_differences(_load_json(path), current)
  if differences:
    raise UsageError(f'--root={root} holds runs of another sweep definition '
                     f'({"; ".join(differences)}): use another --root')


def load_definition(root: str) -> tuple[str, list[SweepRun]]:
  """The sweep name and runs recorded in ROOT/sweep.json."""
  path = os.path.join(root, SWEEP_FILE)
  if not os.path.exists(path):
    raise UsageError(f'--root={root} holds no {SWEEP_FILE}: start a sweep there with '
                     f'`python -m experiments.sweep --sweep=NAME --root={root}` (add --dry_run to '
                     'record it without running)')
  saved = _load_json(path)
  try:
    return saved['sweep'], [SweepRun(run['workdir'], run['settings']) for run in saved['runs']]
  except (KeyError, TypeError):
    raise UsageError(f'{path} is not a sweep definition: move it away and rerun '
                     'experiments.sweep') from None


def _load_json(path: str):
  try:
    with open(path) as handle:
      return json.load(handle)
  except (OSError, ValueError) as error:
    raise UsageError(f'{path} is unreadable ({error}): move it away and rerun '
                     'experiments.sweep') from None


def _definition_differences(saved: dict, current: dict) -> list[str]:
  differences = []
  if saved.get('sweep') != current['sweep']:
    differences.append(f'sweep {saved.get("sweep")} there, {current["sweep"]} now')
  saved_runs = {run['workdir']: run['settings'] for run in saved.get('runs', [])}
  current_runs = {run['workdir']: run['settings'] for run in current['runs']}
  settings = {}
  for workdir in saved_runs.keys() & current_runs.keys():
    settings.update(_settings_differences(saved_runs[workdir], current_runs[workdir]))
  differences += [f'{key}: {there} there, {now} now'
                  for key, (there, now) in sorted(settings.items())]
  for count, where in ((len(saved_runs.keys() - current_runs.keys()), 'only there'),
                       (len(current_runs.keys() - saved_runs.keys()), 'only now')):
    if count:
      differences.append(f'{count} runs {where}')
  return differences


def _settings_differences(there: dict, now: dict) -> dict:
  """key -> (value there, value now) for the settings that differ; `unset` where one lacks it."""
  keys = sorted((there.keys() | now.keys()) - RESUMABLE_DIFFERENCES)
  shown = lambda values, key: format_value(values[key]) if key in values else 'unset'
  return {key: (shown(there, key), shown(now, key)) for key in keys
          if shown(there, key) != shown(now, key)}


@dataclasses.dataclass(frozen=True)
class RunState:
  run: SweepRun
  workdir: str  # absolute
  status: str  # 'complete', 'missing', 'invalid' (rerun it) or 'conflict' (other settings: keep)
  results: dict | None = None
  problem: str | None = None  # one line, for 'invalid' and 'conflict'

  @property
  def results_path(self):
    return os.path.join(self.workdir, RESULTS_FILE)

  @property
  def log_path(self):
    return os.path.join(self.workdir, LOG_FILE)

  def refreshed(self) -> 'RunState':
    """The state of the same run now (another process may have finished it since)."""
    return _state_of(self.run, self.workdir)


def run_state(root: str, run: SweepRun) -> RunState:
  """Whether `run` is complete under `root`: results.json valid, finished and of these settings."""
  return _state_of(run, os.path.join(os.path.abspath(root), run.workdir))


def _state_of(run: SweepRun, workdir: str) -> RunState:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return RunState(run, workdir, 'missing')
  try:
    with open(path) as handle:
      results = json.load(handle)
  except (OSError, ValueError) as error:
    return RunState(run, workdir, 'invalid', problem=f'{path} is not valid JSON ({error})')
  missing = [key for key in RESULT_KEYS if not isinstance(results, dict) or key not in results]
  if missing or not isinstance(results['flags'], dict):
    return RunState(run, workdir, 'invalid',
                    problem=f'{path} is incomplete (no {", ".join(missing) or "flags"})')
  differences = {key: values for key, values in
                 _settings_differences(results['flags'], run.settings).items()
                 if key in run.settings}
  if differences:
    text = ', '.join(f'{key}={there} there, {now} now' for key, (there, now) in differences.items())
    return RunState(run, workdir, 'conflict', problem=f'{path} is a run with other settings '
                    f'({text}): move that workdir away to rerun it')
  return RunState(run, workdir, 'complete', results=results)
