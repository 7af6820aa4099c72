"""The training loop: alternating auxiliary and classification steps under a tf.distribute strategy.

Each iteration takes an auxiliary step (its own SGD-Nesterov optimizer, trunk + auxiliary head) and
then a classification step (another optimizer, trunk + class head), several iterations per traced
call. Losses are divided by the global batch, so any number of replicas computes the same update.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics, scores
from tfanom.auxiliary import aux_norm_task, make_auxiliary_task
from tfanom.config import TrainConfig
from tfanom.data.holdout import HoldoutSplit
from tfanom.data.pipeline import InputPipeline, to_unit_range
from tfanom.errors import UsageError, first_line
from tfanom.inference.scorer import Scorer
from tfanom.models import build_model
from tfanom.models.mixed_precision import make_optimizer, precision_scope
from tfanom.models.trunk import checkpoint_variables, weight_decay_variables
from tfanom.progress import Throttle
from tfanom.training.distribute import is_chief
from tfanom.workdir import UNREADABLE_DIR

MAX_TO_KEEP = 2  # checkpoints kept: the newest and one to fall back to
TRAIN_STATS = ('loss', 'correct', 'count', 'aux_loss', 'aux_correct', 'aux_count')


class TrainingDiverged(UsageError):
  pass


class Preempted(Exception):
  """Training stopped on request (SIGTERM) after saving a checkpoint."""


class TriangleSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """airbench's schedule without lookahead (clean_airbench): linear from 0.2x to 1x the peak rate
  over the first 20% of the steps, then linear down to 0 at the last step."""

  WARMUP, START, END = 0.2, 0.2, 0.0

  def __init__(self, peak: float, total_steps: int):
    self.peak, self.total_steps = peak, total_steps
    self.warmup_steps = max(1, int(total_steps * self.WARMUP))

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    rising = step / self.warmup_steps
    falling = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
    factor = tf.where(step < self.warmup_steps,
                      self.START + (1.0 - self.START) * rising,
                      1.0 + (self.END - 1.0) * tf.minimum(falling, 1.0))
    return self.peak * factor

  def get_config(self):
    return dict(peak=self.peak, total_steps=self.total_steps)


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
  total_steps = config.epochs * steps_per_epoch
  if config.lr_schedule == 'triangle':
    return TriangleSchedule(config.learning_rate, total_steps)
  boundaries = [int(round(f * total_steps)) for f in config.lr_decay_fractions]
  values = [config.learning_rate * config.lr_decay_factor ** i for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


class Trainer:
  """Trains one hold-out classifier and evaluates it; checkpoints let the same call resume."""

  def __init__(self, config: TrainConfig, split: HoldoutSplit, strategy: tf.distribute.Strategy,
               checkpoint_dir: str | None = None, log=print, summary_dir: str | None = None):
    self.config, self.split, self.strategy, self.log = config, split, strategy, log
    if config.xla and strategy.num_replicas_in_sync > 1:
      local_devices = strategy.extended.worker_devices
      if len(local_devices) > 1 and any('CPU' in device for device in local_devices):
        # XLA compiles for one CPU device and cannot reach the other replicas' variables.
        raise UsageError(f'--xla cannot compile for {len(local_devices)} replicas on CPU '
                         'devices: use --strategy=default on CPUs, or run on GPUs')
    # Before any layer exists: Keras initialisers draw their seeds when they are constructed.
    keras.utils.set_random_seed(config.seed)
    self.summary_dir = summary_dir
    self.summary_writer = None
    self.aux_task = make_auxiliary_task(config)
    self.pipeline = InputPipeline(split, config.batch_size, config.resolved_aux_batch_size,
                                  config.augment, config.seed, config.crop_size,
                                  config.crop_padding, config.crop_fill)
    self.steps_per_epoch = self.pipeline.steps_per_epoch
    with strategy.scope(), precision_scope(config.mixed_precision):
      self.model = build_model(config, split.num_classes, self.pipeline.image_shape, split.mean,
                               split.std, train_images=split.train.images)
      self._shift_ids = self.model.norm_shifts()
      schedule = learning_rate_schedule(config, self.steps_per_epoch)
      self.cls_variables = self.model.trunk_variables() + self.model.class_head.trainable_variables
      self.cls_optimizer = make_optimizer(
          keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True),
          config.mixed_precision)
      self.cls_optimizer.build(self.cls_variables)
      # Where training stands: a checkpoint taken mid-epoch resumes at the same batch, and the
      # epoch's running training statistics come back with it.
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
      self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='step_in_epoch')
      self.epoch_totals = tf.Variable(tf.zeros(len(TRAIN_STATS), tf.float64), trainable=False,
                                      name='epoch_totals')
      trackables = dict(model=checkpoint_variables(self.model), cls_optimizer=self.cls_optimizer,
                        epoch=self.epoch, step_in_epoch=self.step_in_epoch,
                        epoch_totals=self.epoch_totals)
      if self.aux_task:
        self.aux_task.build(self.model, self.pipeline.image_shape)
        self.aux_variables = self.aux_task.train_variables(self.model, self._aux_norm_task)
        self.aux_optimizer = make_optimizer(
            keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True),
            config.mixed_precision)
        self.aux_optimizer.build(self.aux_variables)
        trackables.update(aux_head=self.aux_task.checkpoint_variables,
                          aux_optimizer=self.aux_optimizer)
    # Host-side bookkeeping, outside the scope: collectives cannot broadcast strings.
    self.history = tf.Variable('[]', dtype=tf.string, trainable=False, name='history')
    self.checkpoint = tf.train.Checkpoint(history=self.history, **trackables)
    self.checkpoint_dir = checkpoint_dir
    self.is_chief = is_chief(strategy)
    # Every worker takes part in saving; only the chief's copy is kept.
    save_dir = checkpoint_dir if self.is_chief or not checkpoint_dir else os.path.join(
        checkpoint_dir, f'.worker-{strategy.cluster_resolver.task_id}-tmp')
    self.manager = (tf.train.CheckpointManager(self.checkpoint, save_dir, max_to_keep=MAX_TO_KEEP)
                    if checkpoint_dir else None)
    self._train_loop = self._make_train_loop()
    self._eval_step = self._make_eval_step()

  @property
  def _aux_norm_task(self):
    return aux_norm_task(self.config)

  # Steps ---------------------------------------------------------------------------------------

  def _decay(self, variables):
    """weight_decay * sum(w**2) / 2 over the decayed variables. Batch-norm shifts are divided by
    --norm_shift_lr_scale, which `_apply` multiplies their gradients by: their learning rate is
    scaled, their decay per step is not (airbench)."""
    config = self.config
    if not config.weight_decay:
      return 0.0  # a zero times the L2 terms would still be computed, forward and backward
    decayed = variables if config.weight_decay_scope == 'all' else weight_decay_variables(variables)
    penalty = config.weight_decay * tf.add_n([
        tf.nn.l2_loss(v) / (config.norm_shift_lr_scale if id(v) in self._shift_ids else 1.0)
        for v in decayed])
    return tf.nn.scale_regularization_loss(penalty)

  def _apply(self, optimizer, tape, loss, variables):
    """One optimizer step; batch-norm shifts move --norm_shift_lr_scale times as far (SGD with
    momentum is linear in the gradient, so scaling a gradient scales that variable's rate)."""
    gradients = tape.gradient(loss, variables)
    scale = self.config.norm_shift_lr_scale
    if scale != 1.0:
      gradients = [g * scale if id(v) in self._shift_ids else g
                   for g, v in zip(gradients, variables)]
    optimizer.apply(gradients, variables)

  def _aux_step(self, images):
    config = self.config
    with tf.GradientTape() as tape:
      per_term, hits = self.aux_task.loss(
          self.model, to_unit_range(images), training=True, norm_task=self._aux_norm_task,
          update_stats=config.aux_norm != 'protected')
      global_batch = self.pipeline.aux_batch_size * self.aux_task.loss_terms_per_image
      # By default the trunk is decayed once per iteration, in the classification step.
      decayed = (self.aux_variables if config.aux_decays_trunk
                 else self.aux_task.trainable_variables)
      loss = (config.aux_weight
              * tf.nn.compute_average_loss(per_term, global_batch_size=global_batch)
              + self._decay(decayed))
      loss = _scaled(self.aux_optimizer, loss)
    self._apply(self.aux_optimizer, tape, loss, self.aux_variables)
    correct = tf.reduce_sum(tf.cast(hits, tf.float32))
    return tf.reduce_sum(per_term), correct, tf.cast(tf.size(per_term), tf.float32)

  def _cls_step(self, images, labels):
    with tf.GradientTape() as tape:
      logits = self.model(to_unit_range(images), training=True)
      if self.config.label_smoothing:
        per_example = keras.losses.categorical_crossentropy(
            tf.one_hot(labels, tf.shape(logits)[-1]), logits, from_logits=True,
            label_smoothing=self.config.label_smoothing)
      else:
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                   from_logits=True)
      loss = (tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)
              + self._decay(self.cls_variables))
      loss = _scaled(self.cls_optimizer, loss)
    self._apply(self.cls_optimizer, tape, loss, self.cls_variables)
    correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))
    return tf.reduce_sum(per_example), correct, tf.cast(tf.size(labels), tf.float32)

  def _replica_step(self, batch):
    aux = ((0.0, 0.0, 0.0) if self.aux_task is None else self._aux_step(batch['aux_image']))
    cls = self._cls_step(batch['image'], batch['label'])
    return tf.stack([*cls, *aux])

  def _make_train_loop(self):
    strategy = self.strategy
    # Iterator ops cannot be compiled: XLA takes the step, the loop around it stays a graph.
    replica_step = tf.function(self._replica_step, jit_compile=True) if self.config.xla else (
        self._replica_step)

    @tf.function
    def train_loop(iterator, num_steps):
      totals = tf.zeros([len(TRAIN_STATS)])
      for _ in tf.range(num_steps):
        per_replica = strategy.run(replica_step, args=(next(iterator),))
        totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      return totals

    return train_loop

  def _make_eval_step(self):
    config = self.config
    scorer = Scorer(self.model, tta=config.tta)

    def replica_eval(batch):
      images = to_unit_range(batch['image'])
      logits = scorer.logits(images)
      outputs = dict(label=batch['label'], prediction=tf.argmax(logits, -1))
      if config.holds_out:  # --holdout=none measures accuracy alone
        outputs.update(msp=scores.msp(logits), odin=scorer.odin_scores(
            images, config.odin_temperature, config.odin_epsilon))
      return outputs

    if config.xla:
      replica_eval = tf.function(replica_eval, jit_compile=True)

    @tf.function
    def eval_step(batch):
      per_replica = self.strategy.run(replica_eval, args=(batch,))
      # Every worker receives every replica's scores, in replica order.
      return {key: self.strategy.gather(value, axis=0) for key, value in per_replica.items()}

    return eval_step

  # Loop ----------------------------------------------------------------------------------------

  def restore(self) -> int:
    """Restores the newest readable checkpoint, if any; returns the number of epochs already done.

    A checkpoint that cannot be read (truncated data, an overwritten index) is named in a warning,
    moved to `checkpoints/unreadable/` and the next older kept one is tried.
    """
    if not self.manager:
      return 0
    for path in reversed(self.manager.checkpoints):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except (AssertionError, ValueError):  # ValueError: a variable of another shape
        raise UsageError(f'{path} does not match this model and its optimizers: it was written '
                         'by another configuration or tfanom version; use a new --workdir') from None
      except (tf.errors.OpError, IndexError) as error:  # read errors, not another model
        self.log(f'warning: checkpoint {path} is unreadable ({first_line(error)}); moved to '
                 f'{self._set_aside(path)}, trying the one before it')
        continue
      done, step = int(self.epoch.numpy()), int(self.step_in_epoch.numpy())
      self.log(f'resumed from {path}: {done} of {self.config.epochs} epochs done'
               + (f', {step} of {self.steps_per_epoch} steps into epoch {done + 1}' if step else ''))
      return done
    if tf.io.gfile.exists(os.path.join(self.checkpoint_dir, UNREADABLE_DIR)):
      raise UsageError(f'no readable checkpoint in {self.checkpoint_dir} (the unreadable ones are '
                       f'in {UNREADABLE_DIR}/): move the workdir away and retrain, or pass a new '
                       '--workdir')
    return 0

  def _set_aside(self, path: str) -> str:
    """Moves checkpoint `path`'s files into checkpoints/unreadable/ and forgets it."""
    aside = os.path.join(self.checkpoint_dir, UNREADABLE_DIR)
    tf.io.gfile.makedirs(aside)
    for name in tf.io.gfile.glob(path + '.*'):
      tf.io.gfile.rename(name, os.path.join(aside, os.path.basename(name)), overwrite=True)
    kept = [p for p in self.manager.checkpoints if p != path]
    if kept:
      logger = tf.get_logger()
      level = logger.level
      logger.setLevel('ERROR')  # the state file's writer is deprecated for users of the manager
      try:
        # The manager takes back the checkpoints whose timestamps the state file lists.
        tf.compat.v1.train.update_checkpoint_state(
            self.checkpoint_dir, kept[-1], kept,
            all_model_checkpoint_timestamps=[os.path.getmtime(p + '.index') for p in kept])
      finally:
        logger.setLevel(level)
    else:
      tf.io.gfile.remove(os.path.join(self.checkpoint_dir, 'checkpoint'))
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir,
                                              max_to_keep=MAX_TO_KEEP)
    return aside

  def save(self):
    """Writes a checkpoint; a failed write is one line, and removes what it half wrote."""
    if not self.manager:
      return
    number = int(self.cls_optimizer.iterations.numpy())
    try:
      self.manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as error:
      for leftover in tf.io.gfile.glob(os.path.join(self.manager.directory, '*_temp*')):
        if tf.io.gfile.isdir(leftover):
          tf.io.gfile.rmtree(leftover)
        else:
          tf.io.gfile.remove(leftover)
      raise UsageError(f'cannot write checkpoint {number} in {self.manager.directory}: '
                       f'{first_line(error)}; free disk space or fix the folder\'s permissions '
                       'and rerun: the earlier checkpoints are kept') from None
    if not self.is_chief:
      tf.io.gfile.rmtree(self.manager.directory)

  @property
  def evaluations(self) -> list[dict]:
    return json.loads(self.history.numpy().decode())

  def should_evaluate(self, epoch: int) -> bool:
    """After 0-based `epoch`: every `eval_every` epochs, and after each epoch of the final window."""
    done = epoch + 1
    every = self.config.eval_every and done % self.config.eval_every == 0
    return bool(every or done > self.config.epochs - self.config.final_window)

  def train(self, stop_requested=lambda: False):
    """Trains to the end, checkpointing every epoch (and every `checkpoint_every_steps`).

    `stop_requested` is polled after every traced call; when it returns True the trainer saves a
    checkpoint and raises `Preempted`.
    """
    config = self.config
    # Only the chief writes summaries: workers would interleave theirs in one event file.
    if self.summary_dir and self.is_chief and self.summary_writer is None:
      self.summary_writer = tf.summary.create_file_writer(self.summary_dir)
    while (epoch := int(self.epoch.numpy())) < config.epochs:
      train_stats = self.train_epoch(epoch, stop_requested)
      if self.should_evaluate(epoch):
        evaluation = dict(epoch=epoch + 1, **self.evaluate()[0], train=train_stats)
        self.history.assign(json.dumps(self.evaluations + [evaluation]))
        self.log(f'epoch {epoch + 1}/{config.epochs} eval: accuracy {evaluation["accuracy"]:.2f}%'
                 + ''.join(f' AP {name} {value:.2f}%' for name, value in evaluation['ap'].items())
                 + (f' (skew {evaluation["skew"]:.2f}%)' if evaluation['ap'] else ''))
        self._summarize((epoch + 1) * self.steps_per_epoch, {
            'eval/accuracy': evaluation['accuracy'],
            **{f'eval/ap_{name}': value for name, value in evaluation['ap'].items()}})
      self.save()
      # Short epochs (digits: 9 steps) end within one traced call: poll here too.
      if int(self.epoch.numpy()) < config.epochs and stop_requested():
        raise Preempted(f'stopped after epoch {epoch + 1} of {config.epochs}; a checkpoint is '
                        'saved: rerun the same command to resume')

  def train_epoch(self, epoch: int, stop_requested=lambda: False) -> dict:
    """Runs epoch `epoch` (0-based) from the step the trainer's state says to its end, and
    advances that state to the start of the next epoch."""
    config = self.config
    step = int(self.step_in_epoch.numpy())
    # Each input pipeline reads its own replicas' shares of every global batch (InputPipeline).
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self.pipeline.train_dataset(epoch, step, context))
    iterator = iter(dataset)
    totals = self.epoch_totals.numpy()
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
      self.step_in_epoch.assign(step)
      self.epoch_totals.assign(totals)
      if throttle.due(final=step == self.steps_per_epoch):
        rate = (step - first_step) * images_per_step / throttle.elapsed()
        self.log(self._progress_line(epoch, step, totals, rate))
        self._summarize(epoch * self.steps_per_epoch + step, {
            **{f'train/{name}': value for name, value in _train_summary(totals).items()},
            'train/learning_rate': float(self.cls_optimizer.learning_rate)})
      if step < self.steps_per_epoch:
        if stop_requested():
          self.save()
          raise Preempted(f'stopped at epoch {epoch + 1} step {step} of {self.steps_per_epoch}; '
                          'a checkpoint is saved: rerun the same command to resume')
        if config.checkpoint_every_steps and step - last_save >= config.checkpoint_every_steps:
          self.save()
          last_save = step
    self.epoch.assign(epoch + 1)
    self.step_in_epoch.assign(0)
    self.epoch_totals.assign(tf.zeros_like(self.epoch_totals))
    return _train_summary(totals)

  def _progress_line(self, epoch, step, totals, images_per_second):
    stats = _train_summary(totals)
    line = (f'epoch {epoch + 1}/{self.config.epochs} step {step}/{self.steps_per_epoch} '
            f'loss {stats["loss"]:.4f} acc {stats["accuracy"]:.2f}%')
    if self.aux_task:
      line += f' | {self.aux_task.name} loss {stats["aux_loss"]:.4f} acc {stats["aux_accuracy"]:.2f}%'
    lr = float(self.cls_optimizer.learning_rate)
    return line + f' | lr {lr:.4g} | {images_per_second:.0f} img/s'

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
    parts = {}
    for batch in dataset:
      for key, value in self._eval_step(batch).items():
        parts.setdefault(key, []).append(value.numpy())
    # The rows after the last example pad the last batch (InputPipeline.eval_dataset).
    arrays = {key: np.concatenate(values)[:self.pipeline.num_eval]
              for key, values in parts.items()}
    return summarize_scores(arrays), arrays


def _scaled(optimizer, loss):
  """The loss a LossScaleOptimizer's `apply` expects gradients of (float16); others take it as is."""
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss


def summarize_scores(arrays: dict) -> dict:
  """Accuracy on known classes, skew and AP per score, all in percent."""
  is_anomaly = arrays['label'] < 0
  # Without a held-out class (--holdout=none) there is nothing to rank: accuracy only.
  return dict(
      metrics.classification_summary(arrays['label'], arrays['prediction']),
      ap={name: 100.0 * float(metrics.average_precision(is_anomaly, arrays[name]))
          for name in ('msp', 'odin')} if is_anomaly.any() else {})


def _train_summary(totals) -> dict:
  loss, correct, count, aux_loss, aux_correct, aux_count = totals
  summary = dict(loss=float(loss / max(count, 1)), accuracy=float(100 * correct / max(count, 1)))
  if aux_count:
    summary.update(aux_loss=float(aux_loss / aux_count),
                   aux_accuracy=float(100 * aux_correct / aux_count))
  return summary


