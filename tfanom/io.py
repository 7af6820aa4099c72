"""Atomic writes of the files the project produces: readers never see half a file."""

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_file(path: str, suffix: str, mode: str):
  """A temporary file beside `path`, renamed to it once written and synced."""
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
  with atomic_file(path, '.json', 'w') as handle:
    json.dump(payload, handle, indent=2, sort_keys=False)
    handle.write('\n')


def write_npz_atomic(path: str, arrays: dict) -> None:
  with atomic_file(path, '.npz', 'wb') as handle:
    np.savez(handle, **arrays)
