"""SavedModel export for TF Serving: a `ScoringModule` written atomically to a version folder."""

import dataclasses
import os
import shutil
import tempfile

import tensorflow as tf

from tfanom.config import setting
from tfanom.errors import UsageError
from tfanom.inference.restore import (Run, data_dir_override, load_run, odin_epsilon_override,
                                      odin_temperature_override)
from tfanom.inference.scorer import ScoringModule
from tfanom.io import current_umask, write_error


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What `python -m tfanom.export` writes; its flags are these fields."""
  workdir: str | None = setting(None, 'The training run whose latest checkpoint is exported.',
                                required=True)
  export_dir: str | None = setting(None, 'Where to write the SavedModel: a numbered version '
                                   'folder such as models/digits/1.', required=True)
  overwrite: bool = setting(False, 'Replace a non-empty --export_dir.')
  data_dir: str | None = data_dir_override()
  odin_temperature: float | None = odin_temperature_override()
  odin_epsilon: float | None = odin_epsilon_override()


def export_run(config: ExportConfig) -> tuple[Run, str]:
  """Exports the latest checkpoint of `config.workdir`; returns the run and the export's path."""
  check_export_dir(config.export_dir, config.overwrite)
  run = load_run(config.workdir, config.data_dir)
  return run, export(run, config.export_dir, config.overwrite, config.odin_temperature,
                     config.odin_epsilon)


def check_export_dir(export_dir: str, overwrite: bool) -> None:
  if not os.path.basename(os.path.normpath(export_dir)).isdigit():
    raise UsageError(f'--export_dir={export_dir} must end in a numbered version folder, as TF '
                     f'Serving expects: e.g. --export_dir={os.path.join(export_dir, "1")}')
  if os.path.exists(export_dir):
    if not os.path.isdir(export_dir):
      raise UsageError(f'--export_dir={export_dir} is a file: choose another path')
    if os.listdir(export_dir) and not overwrite:
      raise UsageError(f'--export_dir={export_dir} exists and is not empty: choose another '
                       'version folder, or pass --overwrite to replace it')


def export(run: Run, export_dir: str, overwrite: bool = False,
           odin_temperature: float | None = None, odin_epsilon: float | None = None) -> str:
  """Saves `run`'s model as a SavedModel in `export_dir` (a numbered version folder).

  ODIN's temperature and step default to the run's. The SavedModel is written to a temporary
  folder beside `export_dir` and renamed into place, so a failure leaves nothing half-written and
  an existing export is replaced only once the new one is complete.
  """
  check_export_dir(export_dir, overwrite)
  try:
    return _export(run, os.path.normpath(export_dir), odin_temperature, odin_epsilon)
  except (OSError, tf.errors.OpError) as error:
    raise write_error(export_dir, error) from None


def _export(run, export_dir, odin_temperature, odin_epsilon) -> str:
  parent = os.path.dirname(os.path.abspath(export_dir))
  os.makedirs(parent, exist_ok=True)
  module = ScoringModule(
      run,
      run.config.odin_temperature if odin_temperature is None else odin_temperature,
      run.config.odin_epsilon if odin_epsilon is None else odin_epsilon)
  staging = tempfile.mkdtemp(dir=parent, prefix=f'.tmp-{os.path.basename(export_dir)}-')
  try:
    # mkdtemp makes a private folder; a model server running as another user must read it.
    os.chmod(staging, 0o777 & ~current_umask())
    signatures = {'serving_default': module.serve.get_concrete_function(),
                  'odin': module.odin.get_concrete_function()}
    tf.saved_model.save(module, staging, signatures=signatures)
    if os.path.exists(export_dir):
      # Rename the old export aside first: a directory can only replace an empty one.
      retired = tempfile.mkdtemp(dir=parent, prefix=f'.old-{os.path.basename(export_dir)}-')
      previous = os.path.join(retired, 'export')
      os.rename(export_dir, previous)
      try:
        os.rename(staging, export_dir)
      except OSError:
        os.rename(previous, export_dir)
        raise
      shutil.rmtree(retired)
    else:
      os.rename(staging, export_dir)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)
  return export_dir


def load_export(export_dir: str):
  """A SavedModel written by `export`, with the attributes of `ScoringModule`."""
  if not tf.saved_model.contains_saved_model(export_dir):
    raise UsageError(f'--export_dir={export_dir} holds no SavedModel: pass a version folder '
                     'written by python -m tfanom.export')
  loaded = tf.saved_model.load(export_dir)
  if not hasattr(loaded, 'features_and_logits'):
    raise UsageError(f'--export_dir={export_dir} is not a tfanom export: pass a version folder '
                     'written by python -m tfanom.export')
  return loaded
