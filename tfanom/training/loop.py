"""The epoch loop: traced calls of the training steps, checkpoints, evaluations, progress lines,
TensorBoard summaries and stop requests.

The maths of a step is in `steps`, what a checkpoint holds in `checkpoints`, the evaluation in
`eval_step` (the one evaluator of `tfanom.inference.evaluator`).
"""

import keras
import numpy as np
import tensorflow as tf

from tfanom.auxiliary import make_auxiliary_task
from tfanom.config import TrainConfig
from tfanom.data.holdout import HoldoutSplit
from tfanom.data.pipeline import InputPipeline
from tfanom.errors import UsageError
from tfanom.progress import Throttle
from tfanom.training import eval_step
from tfanom.training.checkpoints import Progress, RunCheckpoint
from tfanom.training.distribute import is_chief
from tfanom.training.steps import TRAIN_STATS, Steps, check_xla, make_train_loop, train_summary


class TrainingDiverged(UsageError):
  pass


class Preempted(Exception):
  """Training stopped on request (a signal) after saving a checkpoint."""


def should_evaluate(config: TrainConfig, epoch: int) -> bool:
  """After 0-based `epoch`: every `eval_every` epochs, and after each epoch of the final window."""
  done = epoch + 1
  every = config.eval_every and done % config.eval_every == 0
  return bool(every or done > config.epochs - config.final_window)


def evaluation_line(config: TrainConfig, evaluation: dict) -> str:
  return (f'epoch {evaluation["epoch"]}/{config.epochs} eval: accuracy '
          f'{evaluation["accuracy"]:.2f}%'
          + ''.join(f' AP {name} {value:.2f}%' for name, value in evaluation['ap'].items())
          + (f' (skew {evaluation["skew"]:.2f}%)' if evaluation['ap'] else ''))


def progress_line(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int, totals,
                  aux_name: str | None, learning_rate: float, images_per_second: float) -> str:
  """The training line of 0-based `epoch` after `step` steps with TRAIN_STATS `totals`."""
  stats = train_summary(totals)
  line = (f'epoch {epoch + 1}/{config.epochs} step {step}/{steps_per_epoch} '
          f'loss {stats["loss"]:.4f} acc {stats["accuracy"]:.2f}%')
  if aux_name:
    line += f' | {aux_name} loss {stats["aux_loss"]:.4f} acc {stats["aux_accuracy"]:.2f}%'
  return line + f' | lr {learning_rate:.4g} | {images_per_second:.0f} img/s'


class Trainer:
  """Trains one hold-out classifier and evaluates it; checkpoints let the same call resume."""

  def __init__(self, config: TrainConfig, split: HoldoutSplit, strategy: tf.distribute.Strategy,
               checkpoint_dir: str | None = None, log=print, summary_dir: str | None = None):
    self.config, self.strategy, self.log = config, strategy, log
    check_xla(config, strategy)
    # Before any layer exists: Keras initialisers draw their seeds when they are constructed.
    keras.utils.set_random_seed(config.seed)
    self.aux_task = make_auxiliary_task(config)
    self.pipeline = InputPipeline(split, config.batch_size, config.resolved_aux_batch_size,
                                  config.augment, config.seed, config.crop_size,
                                  config.crop_padding, config.crop_fill)
    self.steps_per_epoch = self.pipeline.steps_per_epoch
    self.steps = Steps(config, split, self.pipeline, self.aux_task, strategy)
    self.model = self.steps.model
    self.progress = Progress.create(strategy, len(TRAIN_STATS))
    self.is_chief = is_chief(strategy)
    self.checkpoint = RunCheckpoint(
        checkpoint_dir, self.model, self.aux_task, cls_optimizer=self.steps.cls_optimizer,
        aux_optimizer=self.steps.aux_optimizer, progress=self.progress, log=log,
        worker=None if self.is_chief else strategy.cluster_resolver.task_id
    ) if checkpoint_dir else None
    self.summary_dir, self.summary_writer = summary_dir, None
    self._train_loop = make_train_loop(self.steps, strategy)
    self._evaluator = eval_step.make_evaluator(config, self.model, strategy)

  @property
  def evaluations(self) -> list[dict]:
    return self.progress.evaluations

  def restore(self) -> int:
    """Restores the newest usable checkpoint, if any; returns the number of epochs already done."""
    path = self.checkpoint.restore() if self.checkpoint else None
    if path is None:
      return 0
    done, step = int(self.progress.epoch.numpy()), int(self.progress.step_in_epoch.numpy())
    self.log(f'resumed from {path}: {done} of {self.config.epochs} epochs done'
             + (f', {step} of {self.steps_per_epoch} steps into epoch {done + 1}' if step else ''))
    return done

  def save(self):
    if self.checkpoint:
      self.checkpoint.save(int(self.steps.cls_optimizer.iterations.numpy()))

  def train(self, stop_requested=lambda: False):
    """Trains to the end, checkpointing every epoch (and every `checkpoint_every_steps`).

    `stop_requested` is polled after every traced call; when it returns True the trainer saves a
    checkpoint and raises `Preempted`.
    """
    config = self.config
    # Only the chief writes summaries: workers would interleave theirs in one event file.
    if self.summary_dir and self.is_chief and self.summary_writer is None:
      self.summary_writer = tf.summary.create_file_writer(self.summary_dir)
    while (epoch := int(self.progress.epoch.numpy())) < config.epochs:
      train_stats = self.train_epoch(epoch, stop_requested)
      if should_evaluate(config, epoch):
        evaluation = dict(epoch=epoch + 1, **self.evaluate()[0], train=train_stats)
        self.progress.add_evaluation(evaluation)
        self.log(evaluation_line(config, evaluation))
        self._summarize((epoch + 1) * self.steps_per_epoch, {
            'eval/accuracy': evaluation['accuracy'],
            **{f'eval/ap_{name}': value for name, value in evaluation['ap'].items()}})
      self.save()
      # Short epochs (digits: 9 steps) end within one traced call: poll here too.
      if int(self.progress.epoch.numpy()) < config.epochs and stop_requested():
        raise Preempted(f'stopped after epoch {epoch + 1} of {config.epochs}; a checkpoint is '
                        'saved: rerun the same command to resume')

  def train_epoch(self, epoch: int, stop_requested=lambda: False) -> dict:
    """Runs epoch `epoch` (0-based) from the step the trainer's progress says to its end, and
    advances the progress to the start of the next epoch."""
    config, progress = self.config, self.progress
    step = int(progress.step_in_epoch.numpy())
    # Each input pipeline reads its own replicas' shares of every global batch (InputPipeline).
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self.pipeline.train_dataset(epoch, step, context))
    iterator = iter(dataset)
    totals = progress.epoch_totals.numpy()
    throttle, last_save, first_step = Throttle(), step, step
    images_per_step = config.batch_size * (2 if self.aux_task else 1)
    chunk_steps = min(config.steps_per_loop, config.checkpoint_every_steps or config.steps_per_loop)
    while step < self.steps_per_epoch:
      num_steps = min(chunk_steps, self.steps_per_epoch - step)
      chunk = self._train_loop(iterator, tf.constant(num_steps)).numpy()
      step += num_steps
      if not np.all(np.isfinite(chunk)):
        global_step = epoch * self.steps_per_epoch + step
        raise TrainingDiverged(
            f'training diverged: loss {chunk[0] / max(chunk[2], 1):.4g} (classification) / '
            f'{chunk[3] / max(chunk[5], 1):.4g} (auxiliary) by step {global_step} (epoch '
            f'{epoch + 1}); the last good checkpoint is kept: lower --learning_rate and rerun')
      totals += chunk
      progress.step_in_epoch.assign(step)
      progress.epoch_totals.assign(totals)
      if throttle.due(final=step == self.steps_per_epoch):
        learning_rate = float(self.steps.cls_optimizer.learning_rate)
        rate = (step - first_step) * images_per_step / throttle.elapsed()
        self.log(progress_line(config, epoch, step, self.steps_per_epoch, totals,
                               self.aux_task and self.aux_task.name, learning_rate, rate))
        self._summarize(epoch * self.steps_per_epoch + step, {
            **{f'train/{name}': value for name, value in train_summary(totals).items()},
            'train/learning_rate': learning_rate})
      if step < self.steps_per_epoch:
        if stop_requested():
          self.save()
          raise Preempted(f'stopped at epoch {epoch + 1} step {step} of {self.steps_per_epoch}; '
                          'a checkpoint is saved: rerun the same command to resume')
        if config.checkpoint_every_steps and step - last_save >= config.checkpoint_every_steps:
          self.save()
          last_save = step
    progress.epoch.assign(epoch + 1)
    progress.step_in_epoch.assign(0)
    progress.epoch_totals.assign(tf.zeros_like(progress.epoch_totals))
    return train_summary(totals)

  def _summarize(self, step: int, scalars: dict):
    """TensorBoard scalars, flushed at once so that a live TensorBoard shows them (the writer
    closes with the trainer)."""
    if self.summary_writer is None:
      return
    with self.summary_writer.as_default(step=step):
      for name, value in scalars.items():
        tf.summary.scalar(name, value)
    self.summary_writer.flush()

  def evaluate(self):
    """Scores every evaluation example; returns (metrics in %, per-example arrays)."""
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self.pipeline.eval_dataset(self.config.eval_batch_size, context))
    # Rows after the last example pad the last batch (InputPipeline.eval_dataset).
    return eval_step.evaluate(self._evaluator, dataset, self.pipeline.num_eval)
