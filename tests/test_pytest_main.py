"""tests/pytest_main.py, the main of BUILD's py_tests, exits non-zero when a test fails."""

import subprocess
import sys

from tests.helpers import ROOT

PASSING = 'def test_adds():\n  assert 1 + 1 == 2\n'
FAILING = 'def test_adds():\n  assert 1 + 1 == 3\n'


def run_main(tmp_path, source):
  (tmp_path / 'test_case.py').write_text(source)
  return subprocess.run([sys.executable, str(ROOT / 'tests' / 'pytest_main.py'),
                         str(tmp_path / 'test_case.py')], cwd=tmp_path, capture_output=True,
                        text=True, check=False, timeout=120)


def test_a_passing_test_exits_0(tmp_path):
  result = run_main(tmp_path, PASSING)
  assert result.returncode == 0 and '1 passed' in result.stdout, result.stdout


def test_a_failing_test_exits_1(tmp_path):
  result = run_main(tmp_path, FAILING)
  assert result.returncode == 1 and '1 failed' in result.stdout, result.stdout


def test_a_file_without_tests_is_not_a_pass(tmp_path):
  assert run_main(tmp_path, 'VALUE = 1\n').returncode == 5  # pytest's "no tests collected"
