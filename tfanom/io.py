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
  try:
    # Temporary files are private (0600); the result gets the permissions of any new file.
    os.chmod(handle.name, 0o666 & ~current_umask())
    yield handle
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(handle.name, path)
  except BaseException as error:
    # On a full disk, closing flushes what is still buffered and fails a second time: that error
    # must not replace the first, which names the cause.
    with contextlib.suppress(OSError):
      handle.close()
    with contextlib.suppress(OSError):
      os.unlink(handle.name)
    if isinstance(error, OSError):
      raise write_error(path, error) from None
    raise


# Written into every folder `atomic_directory` puts in place: the files tfanom wrote there. Only a
# folder whose every file is listed in it may be replaced, so that no command deletes a file it
# did not write (the images being scored, or anything a user keeps beside the outputs).
OUTPUT_MARKER = '.tfanom-output'


def _files_below(folder: str) -> list[str]:
  """Every file (and link to a folder) below `folder`, relative to it, sorted."""
  found = []
  for root, dirs, files in os.walk(folder):
    names = files + [name for name in dirs if os.path.islink(os.path.join(root, name))]
    found += [os.path.relpath(os.path.join(root, name), folder) for name in names]
  return sorted(found)


def foreign_files(folder: str) -> list[str]:
  """The files below `folder` that its OUTPUT_MARKER does not list: all of them without one."""
  try:
    with open(os.path.join(folder, OUTPUT_MARKER), encoding='utf-8') as handle:
      written = set(json.load(handle)['files'])
  except (OSError, ValueError, KeyError, TypeError):
    written = set()
  return [name for name in _files_below(folder) if name != OUTPUT_MARKER and name not in written]


def _inside(path: str, folder: str) -> bool:
  """Whether the real path `path` is the real folder `folder` or below it."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_replaceable(path: str, option: str, overwrite: bool, inputs=()) -> None:
  """Refuses, in one line, a `path` that `atomic_directory` must not replace.

  A missing or empty folder may be written; a non-empty one only with `overwrite`, and only when
  it holds nothing but a tfanom output (every file listed in its OUTPUT_MARKER) and none of
  `inputs` (paths the command reads).
  """
  named = f'{option}={path}'
  if not os.path.lexists(path):
    return
  if not os.path.isdir(path) or os.path.islink(path):
    raise UsageError(f'{named} is a file: choose another path')
  real = os.path.realpath(path)
  if _inside(os.getcwd(), real):
    # Replacing it would leave this process and the user's shell in a deleted folder.
    raise UsageError(f'{named} holds the current folder: choose a folder below it, such as '
                     f'{option}={os.path.join(path, "scored")}')
  if not os.listdir(path):
    return
  for source in inputs:
    if _inside(os.path.realpath(source), real):
      raise UsageError(f'{named} holds the input {source}: choose another folder (nothing was '
                       'written)')
  if not overwrite:
    raise UsageError(f'{named} exists and is not empty: choose another folder, or pass '
                     '--overwrite to replace it')
  foreign = foreign_files(path)
  if foreign:
    shown = ', '.join(repr(name) for name in foreign[:3]) + (' ...' if len(foreign) > 3 else '')
    raise UsageError(f'{named} holds {len(foreign)} file(s) tfanom did not write ({shown}): '
                     '--overwrite replaces only a folder of tfanom outputs; choose another '
                     'folder (nothing was deleted)')


@contextlib.contextmanager
def atomic_directory(path: str, option: str):
  """A staging folder beside `path`, put in place of `path` once the block has filled it.

  An existing `path` is replaced only when the new folder is complete, and only when
  `check_replaceable` allows it (`option` names it); if the block fails, nothing at `path` changes
  and the staging folder is removed. The new folder gets an OUTPUT_MARKER listing its files.
  OSErrors are the caller's to report.
  """
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=f'.tmp-{os.path.basename(path)}-')
  try:
    # mkdtemp makes a private folder; a server running as another user must read the result.
    os.chmod(staging, 0o777 & ~current_umask())
    yield staging
    written = _files_below(staging)
    with open(os.path.join(staging, OUTPUT_MARKER), 'w', encoding='utf-8') as handle:
      json.dump(dict(written_by='tfanom', files=written), handle, indent=1)
    check_replaceable(path, option, overwrite=True)
    if os.path.exists(path):
      # Rename the old folder aside first: a directory can only replace an empty one.
      retired = tempfile.mkdtemp(dir=parent, prefix=f'.old-{os.path.basename(path)}-')
      previous = os.path.join(retired, 'previous')
      try:
        os.rename(path, previous)
        try:
          os.rename(staging, path)
        except OSError:
          os.rename(previous, path)
          raise
      finally:
        # Empty unless the old output was replaced, which check_replaceable allowed above.
        if not os.path.exists(previous) or os.path.exists(os.path.join(path, OUTPUT_MARKER)):
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
