"""The one exception type that entry points turn into a one-line message and a non-zero exit."""

import contextlib
import sys


class UsageError(Exception):
  """A problem the user can fix: the message names it and says how."""


def first_line(error: Exception) -> str:
  """The first line of an error's own message (an OSError's strerror, an OpError's message)."""
  text = (getattr(error, 'strerror', None) or getattr(error, 'message', None) or
          str(error)).strip()
  return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def reported_as_one_line(program: str):
  """Turns a UsageError raised inside into `program: error: message` on stderr and exit status 2."""
  try:
    yield
  except UsageError as error:
    print(f'{program}: error: {error}', file=sys.stderr)
    sys.exit(2)
