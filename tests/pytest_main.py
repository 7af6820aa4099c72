"""The main of every Bazel py_test: runs pytest on the test files given as arguments and exits with
its status, so that a failing test fails the Bazel test. (A test file run as a script would only
define its tests and exit 0.)"""

import sys

import pytest

if __name__ == '__main__':
  # No .pytest_cache: Bazel's runfiles are not the place to write one.
  sys.exit(pytest.main(['-p', 'no:cacheprovider', *sys.argv[1:]]))
