"""Atomic writes of the files the project produces: readers never see half a file.

A write that fails (no permission, a full disk, a file where a folder should be) leaves the earlier
file untouched, removes its temporary file and ends in a `UsageError` naming the path and the cause.
JSON is standard JSON: NaN and infinities (an undefined metric) are written as null.
"""

import contextlib
import json
import math
import os
import shutil
import tempfile

import numpy as np

from tfanom.errors import UsageError, first_line


def write_error(path: str, error: Exception) -> UsageError:
  """The one-line error for a failed write of `path` (an OSError or a TensorFlow OpError)."""
  return UsageError(f'cannot write {path}: {first_line(error)}; check that its folder is writable and the disk '
                    'has room, then rerun (earlier files are unchanged)')


@contextlib.contextmanager
def atomic_file(path: str, suffix: str, mode: str):
  """A temporary file beside `path`, renamed to it once written and synced."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(mode, dir=directory, prefix='.tmp-', suffix=suffix,
                                         delete=False)
  except OSError as error:
    raise write_error(path, error) from None
  with handle:
    try:
      # Temporary files are private (0600); the result gets the permissions of any new file.
      os.chmod(handle.name, 0o666 & ~current_umask())
      yield handle
      handle.flush()
      os.fsync(handle.fileno())
    except BaseException as error:
      os.unlink(handle.name)
      if isinstance(error, OSError):
        raise write_error(path, error) from None
      raise
  try:
    os.replace(handle.name, path)
  except OSError as error:
    os.unlink(handle.name)
    raise write_error(path, error) from None


@contextlib.contextmanager
def atomic_directory(path: str):
  """A staging folder beside `path`, put in place of `path` once the block has filled it.

  An existing `path` is replaced only when the new folder is complete; if the block fails, nothing
  at `path` changes and the staging folder is removed. OSErrors are the caller's to report.
  """
  path = os.path.normpath(path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=f'.tmp-{os.path.basename(path)}-')
  try:
    # mkdtemp makes a private folder; a server running as another user must read the result.
    os.chmod(staging, 0o777 & ~current_umask())
    yield staging
    if os.path.exists(path):
      # Rename the old folder aside first: a directory can only replace an empty one.
      retired = tempfile.mkdtemp(dir=parent, prefix=f'.old-{os.path.basename(path)}-')
      previous = os.path.join(retired, 'previous')
      os.rename(path, previous)
      try:
        os.rename(staging, path)
      except OSError:
        os.rename(previous, path)
        raise
      shutil.rmtree(retired)
    else:
      os.rename(staging, path)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)


def current_umask() -> int:
  umask = os.umask(0)
  os.umask(umask)
  return umask


def standard_json(value):
  """`value` with every non-finite float replaced by None, so that it is standard JSON."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {key: standard_json(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [standard_json(item) for item in value]
  return value


def write_json_atomic(path: str, payload) -> None:
  with atomic_file(path, '.json', 'w') as handle:
    json.dump(standard_json(payload), handle, indent=2, sort_keys=False, allow_nan=False)
    handle.write('\n')


def write_npz_atomic(path: str, arrays: dict) -> None:
  with atomic_file(path, '.npz', 'wb') as handle:
    np.savez(handle, **arrays)
