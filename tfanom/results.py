"""The results of a run: `results.json` and the summary table, and atomic writes of result files."""

import contextlib
import json
import os
import tempfile

import numpy as np

from tfanom.config import TrainConfig

RESULTS_FILE = 'results.json'


@contextlib.contextmanager
def _atomic_file(path: str, suffix: str, mode: str):
  """A temporary file beside `path`, renamed to it once written: readers never see half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile(mode, dir=directory, prefix='.tmp-', suffix=suffix,
                                   delete=False) as handle:
    try:
      # Temporary files are private (0600); the result gets the permissions of any new file.
      os.chmod(handle.name, 0o666 & ~current_umask())
      yield handle
      handle.flush()
      os.fsync(handle.fileno())
    except BaseException:
      os.unlink(handle.name)
      raise
  os.replace(handle.name, path)


def current_umask() -> int:
  umask = os.umask(0)
  os.umask(umask)
  return umask


def write_json_atomic(path: str, payload) -> None:
  with _atomic_file(path, '.json', 'w') as handle:
    json.dump(payload, handle, indent=2, sort_keys=False)
    handle.write('\n')


def write_npz_atomic(path: str, arrays: dict) -> None:
  with _atomic_file(path, '.npz', 'wb') as handle:
    np.savez(handle, **arrays)


def build_results(config: TrainConfig, holdout_index: int, holdout_name: str,
                  evaluations: list[dict], final: dict) -> dict:
  """`results.json`: the last evaluation at top level, `final` averaged over the last epochs."""
  last = evaluations[-1]
  return dict(
      dataset=config.dataset,
      holdout=dict(index=holdout_index, name=holdout_name),
      aux=config.aux,
      seed=config.seed,
      evaluated_on='validation' if config.validation else 'test',
      flags=config.to_dict(),
      accuracy=last['accuracy'],
      skew=last['skew'],
      ap=last['ap'],
      num_examples=last['num_examples'],
      num_anomalies=last['num_anomalies'],
      final=final,
      history=evaluations,
  )


def summary_table(results: dict) -> str:
  """A plain-text table of the last evaluation and the final-window average."""
  scores = list(results['ap'])
  header = f'{"":<22}{"accuracy":>10}' + ''.join(f'{"AP " + s:>10}' for s in scores)
  rows = [('last evaluation', results)]
  if results.get('final'):
    window = results['final']['epochs']
    rows.append((f'mean of epochs {window[0]}-{window[-1]}', results['final']))
  lines = [f'{results["dataset"]}, anomaly = class {results["holdout"]["index"]} '
           f'({results["holdout"]["name"]}), aux = {results["aux"]}, seed {results["seed"]}, '
           f'{results["num_examples"]} {results["evaluated_on"]} examples, '
           f'skew {results["skew"]:.2f}%', header]
  for label, values in rows:
    lines.append(f'{label:<22}{values["accuracy"]:>10.2f}'
                 + ''.join(f'{values["ap"][s]:>10.2f}' for s in scores))
  return '\n'.join(lines)
