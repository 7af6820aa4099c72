"""Auxiliary self-supervised tasks trained in alternation with classification (paper section 4)."""

from tfanom.auxiliary.rotation import RotationTask
from tfanom.errors import UsageError

AUXILIARY_TASKS = ('none', 'rotation')


def make_auxiliary_task(name: str, rotations: str = 'rot90'):
  """The auxiliary task called `name`, or None for classification-only training."""
  if name == 'none':
    return None
  if name == 'rotation':
    return RotationTask(rotations)
  raise UsageError(f'--aux={name} is unknown: choose one of {", ".join(AUXILIARY_TASKS)}')
