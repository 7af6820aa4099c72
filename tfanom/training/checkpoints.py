"""What a run's checkpoint holds, and its kept checkpoints: restore with fall-back, set-aside, save.

Training, evaluation and export all read checkpoints through `RunCheckpoint`: training with its
optimizers and `Progress`, the others the weights alone (model and auxiliary head).
"""

import dataclasses
import json
import os

import tensorflow as tf

from tfanom.errors import UsageError, first_line
from tfanom.models.trunk import checkpoint_variables
from tfanom.workdir import CONFIG_FILE, UNREADABLE_DIR

MAX_TO_KEEP = 2  # checkpoints kept: the newest and one to fall back to


@dataclasses.dataclass
class Progress:
  """Where training stands. A checkpoint taken mid-epoch resumes at the same batch, and the
  epoch's running training statistics and the evaluations so far come back with it."""
  epoch: tf.Variable  # epochs done
  step_in_epoch: tf.Variable
  epoch_totals: tf.Variable  # the epoch's summed training statistics so far
  history: tf.Variable  # the evaluations so far, as JSON

  @classmethod
  def create(cls, strategy: tf.distribute.Strategy, num_stats: int) -> 'Progress':
    with strategy.scope():
      epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
      step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='step_in_epoch')
      epoch_totals = tf.Variable(tf.zeros(num_stats, tf.float64), trainable=False,
                                 name='epoch_totals')
    # Host-side bookkeeping, outside the scope: collectives cannot broadcast strings.
    history = tf.Variable('[]', dtype=tf.string, trainable=False, name='history')
    return cls(epoch, step_in_epoch, epoch_totals, history)

  @property
  def evaluations(self) -> list[dict]:
    return json.loads(self.history.numpy().decode())

  def add_evaluation(self, evaluation: dict):
    self.history.assign(json.dumps(self.evaluations + [evaluation]))


class RunCheckpoint:
  """A run's checkpoints in `directory`, numbered by global step, the last two kept.

  A checkpoint holds the model's variables and the auxiliary head's; a training run's also both
  optimizers and its `Progress`. With a `progress` this is the training run's own: restoring
  checks that every saved object found its variable, and sets damaged checkpoints aside. Without,
  it restores the weights alone (evaluation, export) and never changes the directory.
  """

  def __init__(self, directory: str, model, aux_task=None, *, cls_optimizer=None,
               aux_optimizer=None, progress: Progress | None = None, log=print,
               worker: int | None = None):
    """`worker`: a non-chief worker's task id. Every worker takes part in saving; a non-chief
    one saves into a temporary folder beside the chief's and deletes it."""
    self.directory, self._log, self._trains = directory, log, progress is not None
    trackables = dict(model=checkpoint_variables(model))
    if aux_task:
      trackables.update(aux_head=aux_task.checkpoint_variables)
    if self._trains:
      trackables.update(cls_optimizer=cls_optimizer, epoch=progress.epoch,
                        step_in_epoch=progress.step_in_epoch, epoch_totals=progress.epoch_totals,
                        history=progress.history)
      if aux_task:
        trackables.update(aux_optimizer=aux_optimizer)
    self._checkpoint = tf.train.Checkpoint(**trackables)
    self._save_dir = directory if worker is None else os.path.join(
        directory, f'.worker-{worker}-tmp')
    self._manager = self._new_manager()

  def _new_manager(self):
    return tf.train.CheckpointManager(self._checkpoint, self._save_dir, max_to_keep=MAX_TO_KEEP)

  @property
  def kept(self) -> list[str]:
    """The kept checkpoints' path prefixes, oldest first."""
    return self._manager.checkpoints

  def restore(self) -> str | None:
    """Restores the newest usable kept checkpoint and returns its path; None if there is none.

    A kept checkpoint whose files are gone is named in a warning and the one before it tried. One
    that cannot be read (truncated data, an overwritten index) is, in training, named in a
    warning, moved to `checkpoints/unreadable/` and the one before it tried; evaluation and export
    call it corrupt instead, since only the training command repairs the folder.
    """
    for path in reversed(self.kept):
      if not tf.io.gfile.exists(path + '.index'):
        self._log(f'warning: checkpoint {path} is listed but its files are gone; trying the one '
                  'before it')
        if self._trains:
          self._forget(path)
        continue
      try:
        status = self._checkpoint.restore(path)
        (status if self._trains else status.expect_partial()).assert_existing_objects_matched()
      except (AssertionError, ValueError) as error:  # ValueError: a variable of another shape
        # The first sentence says what failed; the rest lists variables, far too long for one line.
        reason = str(error).split('. ')[0].strip()
        held = 'weights and optimizer state' if self._trains else 'weights'
        raise UsageError(f'{path} does not hold the {held} of the model that {CONFIG_FILE} '
                         f'describes ({reason}): it was written by another configuration or '
                         'tfanom version; retrain in a new --workdir') from None
      except (tf.errors.OpError, IndexError) as error:  # read errors, not another model
        if not self._trains:
          raise UsageError(f'{path} is corrupt ({first_line(error)}): rerun the tfanom.train '
                           'command of this workdir, which sets it aside and resumes from the '
                           'checkpoint before it, then run this again') from None
        self._log(f'warning: checkpoint {path} is unreadable ({first_line(error)}); moved to '
                  f'{self._set_aside(path)}, trying the one before it')
        continue
      return path
    if tf.io.gfile.exists(os.path.join(self.directory, UNREADABLE_DIR)):
      raise UsageError(f'no readable checkpoint in {self.directory} (the unreadable ones are '
                       f'in {UNREADABLE_DIR}/): move the workdir away and retrain, or pass a new '
                       '--workdir')
    return None

  def _set_aside(self, path: str) -> str:
    """Moves checkpoint `path`'s files into checkpoints/unreadable/ and forgets it."""
    aside = os.path.join(self.directory, UNREADABLE_DIR)
    tf.io.gfile.makedirs(aside)
    for name in tf.io.gfile.glob(path + '.*'):
      tf.io.gfile.rename(name, os.path.join(aside, os.path.basename(name)), overwrite=True)
    self._forget(path)
    return aside

  def _forget(self, path: str):
    """Drops `path` from the checkpoint state, so that saving never counts it among the kept."""
    kept = [p for p in self.kept if p != path and tf.io.gfile.exists(p + '.index')]
    if kept:
      logger = tf.get_logger()
      level = logger.level
      logger.setLevel('ERROR')  # the state file's writer is deprecated for users of the manager
      try:
        # The manager takes back the checkpoints whose timestamps the state file lists.
        tf.compat.v1.train.update_checkpoint_state(
            self.directory, kept[-1], kept,
            all_model_checkpoint_timestamps=[os.path.getmtime(p + '.index') for p in kept])
      finally:
        logger.setLevel(level)
    else:
      tf.io.gfile.remove(os.path.join(self.directory, 'checkpoint'))
    self._manager = self._new_manager()

  def save(self, number: int):
    """Writes checkpoint `number`; a failed write is one line, and removes what it half wrote."""
    try:
      self._manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as error:
      for leftover in tf.io.gfile.glob(os.path.join(self._save_dir, '*_temp*')):
        if tf.io.gfile.isdir(leftover):
          tf.io.gfile.rmtree(leftover)
        else:
          tf.io.gfile.remove(leftover)
      raise UsageError(f'cannot write checkpoint {number} in {self._save_dir}: '
                       f'{first_line(error)}; free disk space or fix the folder\'s permissions '
                       'and rerun: the earlier checkpoints are kept') from None
    if self._save_dir != self.directory:
      tf.io.gfile.rmtree(self._save_dir)
