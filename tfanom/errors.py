"""The one exception type that entry points turn into a one-line message and a non-zero exit."""


class UsageError(Exception):
  """A problem the user can fix: the message names it and says how."""
