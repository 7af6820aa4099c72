"""What every command does before it imports TensorFlow: hide TensorFlow's C++ start-up lines.

Importing TensorFlow 2.21 on a CPU machine prints seven native log lines to stderr, among them
`E0000 ... failed call to cuInit: ... CUDA error`, which users read as a failure. Four of them are
written before TensorFlow's logger is configured, so TF_CPP_MIN_LOG_LEVEL cannot hide them: the
import runs with stderr captured into a file, and what was not such a line is written back.
TF_CPP_MIN_LOG_LEVEL=3 then keeps the later ones (the cuInit error) away. A TF_CPP_MIN_LOG_LEVEL
of 1, 2 or 3 set by the user is treated the same way: it never shows more than the default.

Set TF_CPP_MIN_LOG_LEVEL=0, or pass --verbosity=1 (or higher), to see all of them.
"""

import os
import re
import sys
import tempfile

# The format of TensorFlow's (and absl's C++) native log lines; the commands' own messages never
# look like this.
NATIVE_LOG_LINE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog\(\) is called'
                             r'|[IWEF]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] )')


def wants_native_logs(argv) -> bool:
  """--verbosity=N (or -v N) with N >= 1 on the command line."""
  for index, arg in enumerate(argv):
    for prefix in ('--verbosity=', '-v='):
      if arg.startswith(prefix):
        return _at_least_one(arg[len(prefix):])
    if arg in ('--verbosity', '-v') and index + 1 < len(argv):
      return _at_least_one(argv[index + 1])
  return False


def _at_least_one(text: str) -> bool:
  try:
    return int(text) >= 1
  except ValueError:
    return False


def import_tensorflow_quietly(argv=None) -> None:
  """Imports TensorFlow with its native start-up lines removed from stderr (see above)."""
  argv = sys.argv if argv is None else argv
  if ('tensorflow' in sys.modules or os.environ.get('TF_CPP_MIN_LOG_LEVEL', '').strip() == '0'
      or wants_native_logs(argv)):
    import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return
  # A user's 1, 2 or 3 asks for fewer lines, never more than the default: at 2 the cuInit error
  # (level E) would be shown, and at any level the lines written before the logger reads it.
  os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode='w+b') as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode(errors='replace').splitlines(True)
              if not NATIVE_LOG_LINE.match(line)]
      sys.stderr.write(''.join(kept))
      sys.stderr.flush()
