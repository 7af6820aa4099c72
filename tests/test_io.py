"""Atomic writes: a failed write names the path, keeps the earlier file and leaves nothing behind;
JSON is standard JSON; an output folder is replaced only when tfanom wrote everything in it."""

import errno
import io
import json
import math
import os
import pathlib
import re
import tempfile

import numpy as np
import pytest

from tfanom.errors import UsageError
from tfanom.io import (OUTPUT_MARKER, atomic_directory, check_replaceable, foreign_files,
                       write_json_atomic, write_npz_atomic)


def test_json_is_standard_json(tmp_path):
  path = tmp_path / 'results.json'
  write_json_atomic(str(path), dict(ap=math.nan, values=[1.0, math.inf, -math.inf], name='x'))
  assert json.loads(path.read_text()) == dict(ap=None, values=[1.0, None, None], name='x')
  assert 'NaN' not in path.read_text() and 'Infinity' not in path.read_text()


def test_a_write_below_a_file_is_one_line(tmp_path):
  (tmp_path / 'taken').write_text('a file')
  with pytest.raises(UsageError, match=r'cannot write .*taken/run/eval.json: .*check that its '
                     'folder is writable'):
    write_json_atomic(str(tmp_path / 'taken' / 'run' / 'eval.json'), {})


def test_a_failed_write_keeps_the_earlier_file_and_no_temporary_file(tmp_path):
  path = tmp_path / 'scores.npz'
  write_npz_atomic(str(path), dict(a=np.arange(3)))
  before = path.read_bytes()

  class Unwritable:  # np.savez fails half way, as on a full disk
    def __array__(self, *args, **kwargs):
      raise OSError(28, 'No space left on device')

  with pytest.raises(UsageError, match='No space left on device'):
    write_npz_atomic(str(path), dict(a=np.arange(3), b=Unwritable()))
  assert path.read_bytes() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ['scores.npz']


class FullDisk(io.FileIO):
  """A file on a full disk: every write fails, so the buffered bytes fail again on closing."""

  def write(self, data):
    raise OSError(errno.ENOSPC, 'No space left on device')


def full_disk_files(mode, dir, prefix, suffix, delete):  # pylint: disable=redefined-builtin
  """Stands in for tempfile.NamedTemporaryFile: a real file whose writes fail as on a full disk."""
  assert not delete
  descriptor, name = tempfile.mkstemp(suffix, prefix, dir)
  os.close(descriptor)
  buffered = io.BufferedWriter(FullDisk(name, 'w'))
  return buffered if 'b' in mode else io.TextIOWrapper(buffered, encoding='utf-8')


@pytest.mark.parametrize('write', [write_npz_atomic, write_json_atomic])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, write):
  path = tmp_path / 'feature_stats.npz'
  path.write_bytes(b'earlier')
  monkeypatch.setattr(tempfile, 'NamedTemporaryFile', full_disk_files)
  payload = dict(bank=np.zeros((300, 64))) if write is write_npz_atomic else dict(
      values=list(range(5000)))
  # The one-line error, not a second OSError raised while closing the file.
  with pytest.raises(UsageError) as raised:
    write(str(path), payload)
  assert str(raised.value).startswith(f'cannot write {path}: No space left on device; ')
  assert path.read_bytes() == b'earlier'
  assert [p.name for p in tmp_path.iterdir()] == ['feature_stats.npz']


def output(path, files):
  """An output folder as atomic_directory writes it."""
  with atomic_directory(str(path), '--output') as staging:
    for name, text in files.items():
      os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
      pathlib.Path(staging, name).write_text(text)


def test_an_output_is_marked_and_replaced_whole(tmp_path):
  out = tmp_path / 'out'
  output(out, {'scores.csv': 'first', 'sub/a.txt': 'a'})
  assert json.loads((out / OUTPUT_MARKER).read_text())['files'] == ['scores.csv', 'sub/a.txt']
  assert foreign_files(str(out)) == []
  check_replaceable(str(out), '--output', overwrite=True)
  output(out, {'scores.csv': 'second'})
  assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, 'scores.csv']
  assert (out / 'scores.csv').read_text() == 'second'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['out']


@pytest.mark.parametrize('case', ['unmarked', 'added file', 'holds the input'])
def test_overwrite_refuses_a_folder_with_files_tfanom_did_not_write(tmp_path, case):
  out = tmp_path / 'photos'
  if case == 'unmarked':
    out.mkdir()
    (out / 'IMG_0001.jpg').write_text('a photo')
  else:
    output(out, {'scores.csv': 'first'})
    (out / 'IMG_0001.jpg').write_text('a photo')
  inputs = [str(out / 'IMG_0001.jpg')] if case == 'holds the input' else []
  message = 'holds the input' if inputs else r"holds 1 file\(s\) tfanom did not write \('IMG_0001"
  with pytest.raises(UsageError, match=message):
    check_replaceable(str(out), '--output', overwrite=True, inputs=inputs)
  with pytest.raises(UsageError, match="tfanom did not write"):
    output(out, {'scores.csv': 'second'})  # the last check, as the new folder is put in place
  assert (out / 'IMG_0001.jpg').read_text() == 'a photo'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['photos']
  with pytest.raises(UsageError, match='exists and is not empty.*--overwrite'):
    check_replaceable(str(out), '--output', overwrite=False)


def test_the_current_folder_is_never_replaced(tmp_path, monkeypatch):
  out = tmp_path / 'out'
  output(out, {'scores.csv': 'first'})
  monkeypatch.chdir(out)
  for path in ('.', '..'):
    with pytest.raises(UsageError, match=rf'--output={re.escape(path)} holds the current folder: '
                       'choose a folder below it'):
      check_replaceable(path, '--output', overwrite=True)
    with pytest.raises(UsageError, match='holds the current folder'):
      output(path, {'scores.csv': 'second'})
  assert (out / 'scores.csv').read_text() == 'first'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['out']
