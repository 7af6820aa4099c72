"""Atomic writes: a failed write names the path, keeps the earlier file and leaves nothing behind;
JSON is standard JSON."""

import json
import math

import numpy as np
import pytest

from tfanom.errors import UsageError
from tfanom.io import write_json_atomic, write_npz_atomic


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
