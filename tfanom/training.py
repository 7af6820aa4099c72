"""The training loop: alternating auxiliary and classification steps under a tf.distribute strategy.

Each iteration takes an auxiliary step (its own SGD-Nesterov optimizer, trunk + auxiliary head) and
then a classification step (another optimizer, trunk + class head), several iterations per traced
call. Losses are divided by the global batch, so any number of replicas computes the same update.
"""

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfanom import metrics, scoring
from tfanom.auxiliary import make_auxiliary_task
from tfanom.config import RESUMABLE_DIFFERENCES, TrainConfig
from tfanom.data.holdout import HoldoutSplit, make_holdout
from tfanom.data.pipeline import InputPipeline, to_unit_range
from tfanom.data.sources import load_source
from tfanom.errors import UsageError
from tfanom.models import CLASSIFICATION_TASK, WRNConfig, build_wide_resnet, weight_decay_variables
from tfanom.results import RESULTS_FILE, build_results, summary_table, write_json_atomic

AUX_NORM_TASK = 1  # the auxiliary task's normalisation parameters with --aux_norm=conditional
TRAIN_STATS = ('loss', 'correct', 'count', 'aux_loss', 'aux_correct', 'aux_count')
LOG_INTERVAL_SECONDS = 10.0
CONFIG_FILE = 'config.json'


class TrainingDiverged(UsageError):
  pass


def make_strategy(name: str) -> tf.distribute.Strategy:
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'onedevice':
    device = '/gpu:0' if tf.config.list_logical_devices('GPU') else '/cpu:0'
    return tf.distribute.OneDeviceStrategy(device)
  return tf.distribute.get_strategy()


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
  total_steps = config.epochs * steps_per_epoch
  boundaries = [int(round(f * total_steps)) for f in config.lr_decay_fractions]
  values = [config.learning_rate * config.lr_decay_factor ** i for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def wrn_config(config: TrainConfig, num_classes: int) -> WRNConfig:
  return WRNConfig(depth=config.depth, width=config.width, dropout=config.dropout,
                   num_classes=num_classes, extra_groups=config.extra_groups,
                   norm_tasks=2 if config.aux_norm == 'conditional' else 1)


class Trainer:
  """Trains one hold-out classifier and evaluates it; checkpoints let the same call resume."""

  def __init__(self, config: TrainConfig, split: HoldoutSplit, strategy: tf.distribute.Strategy,
               checkpoint_dir: str | None = None, log=print):
    self.config, self.split, self.strategy, self.log = config, split, strategy, log
    # Before any layer exists: Keras layers draw their initializers' seeds when constructed.
    keras.utils.set_random_seed(config.seed)
    self.aux_task = make_auxiliary_task(config.aux, config.rotations)
    aux_batch = config.batch_size // 4 if self.aux_task else 0
    self.pipeline = InputPipeline(split, config.batch_size, aux_batch, config.augment, config.seed)
    self.steps_per_epoch = self.pipeline.steps_per_epoch
    with strategy.scope():
      self.model = build_wide_resnet(wrn_config(config, split.num_classes),
                                     split.train.images.shape[1:], split.mean, split.std)
      schedule = learning_rate_schedule(config, self.steps_per_epoch)
      self.cls_variables = self.model.trunk_variables() + self.model.class_head.trainable_variables
      self.cls_optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True)
      self.cls_optimizer.build(self.cls_variables)
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
      self.history = tf.Variable('[]', dtype=tf.string, trainable=False, name='history')
      trackables = dict(model=self.model, cls_optimizer=self.cls_optimizer, epoch=self.epoch,
                        history=self.history)
      if self.aux_task:
        self.aux_task.build(self.model.class_head.kernel.shape[0])
        self.aux_variables = (self.model.trunk_variables(self._aux_norm_task)
                              + self.aux_task.trainable_variables)
        self.aux_optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                                  nesterov=True)
        self.aux_optimizer.build(self.aux_variables)
        trackables.update(aux_head=self.aux_task.head, aux_optimizer=self.aux_optimizer)
    self.checkpoint = tf.train.Checkpoint(**trackables)
    self.manager = (tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=2)
                    if checkpoint_dir else None)
    self._train_loop = self._make_train_loop()
    self._eval_step = self._make_eval_step()

  @property
  def _aux_norm_task(self):
    return AUX_NORM_TASK if self.config.aux_norm == 'conditional' else CLASSIFICATION_TASK

  # Steps ---------------------------------------------------------------------------------------

  def _decay(self, variables):
    kernels = weight_decay_variables(variables)
    penalty = self.config.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])
    return tf.nn.scale_regularization_loss(penalty)

  def _aux_step(self, images):
    config = self.config
    with tf.GradientTape() as tape:
      logits, labels = self.aux_task.logits_and_labels(
          self.model, to_unit_range(images), training=True, norm_task=self._aux_norm_task,
          update_stats=config.aux_norm != 'protected')
      per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
      global_batch = self.pipeline.aux_batch_size * self.aux_task.images_per_example
      # The trunk is decayed once per iteration, in the classification step.
      loss = (config.rotation_weight
              * tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
              + self._decay(self.aux_task.trainable_variables))
    gradients = tape.gradient(loss, self.aux_variables)
    self.aux_optimizer.apply(gradients, self.aux_variables)
    correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))
    return tf.reduce_sum(per_example), correct, tf.cast(tf.size(labels), tf.float32)

  def _cls_step(self, images, labels):
    with tf.GradientTape() as tape:
      logits = self.model(to_unit_range(images), training=True)
      per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
      loss = (tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)
              + self._decay(self.cls_variables))
    gradients = tape.gradient(loss, self.cls_variables)
    self.cls_optimizer.apply(gradients, self.cls_variables)
    correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))
    return tf.reduce_sum(per_example), correct, tf.cast(tf.size(labels), tf.float32)

  def _replica_step(self, batch):
    aux = ((0.0, 0.0, 0.0) if self.aux_task is None else self._aux_step(batch['aux_image']))
    cls = self._cls_step(batch['image'], batch['label'])
    return tf.stack([*cls, *aux])

  def _make_train_loop(self):
    strategy = self.strategy

    @tf.function
    def train_loop(iterator, num_steps):
      totals = tf.zeros([len(TRAIN_STATS)])
      for _ in tf.range(num_steps):
        per_replica = strategy.run(self._replica_step, args=(next(iterator),))
        totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      return totals

    return train_loop

  def _make_eval_step(self):
    config = self.config

    def replica_eval(batch):
      images = to_unit_range(batch['image'])
      logits = self.model(images, training=False)
      odin = scoring.odin(lambda x: self.model(x, training=False), images,
                          config.odin_temperature, config.odin_epsilon)
      return dict(label=batch['label'], prediction=tf.argmax(logits, -1),
                  msp=scoring.msp(logits), odin=odin)

    @tf.function
    def eval_step(batch):
      return self.strategy.run(replica_eval, args=(batch,))

    return eval_step

  # Loop ----------------------------------------------------------------------------------------

  def restore(self) -> int:
    """Restores the latest checkpoint, if any; returns the number of epochs already done."""
    if self.manager and self.manager.latest_checkpoint:
      self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
      self.log(f'resumed from {self.manager.latest_checkpoint} '
               f'(epoch {int(self.epoch.numpy())} of {self.config.epochs})')
    return int(self.epoch.numpy())

  @property
  def evaluations(self) -> list[dict]:
    return json.loads(self.history.numpy().decode())

  def should_evaluate(self, epoch: int) -> bool:
    """After 0-based `epoch`: every `eval_every` epochs, and after each epoch of the final window."""
    done = epoch + 1
    every = self.config.eval_every and done % self.config.eval_every == 0
    return bool(every or done > self.config.epochs - self.config.final_window)

  def train(self):
    config = self.config
    for epoch in range(int(self.epoch.numpy()), config.epochs):
      train_stats = self.train_epoch(epoch)
      self.epoch.assign(epoch + 1)
      if self.should_evaluate(epoch):
        evaluation = dict(epoch=epoch + 1, **self.evaluate()[0], train=train_stats)
        self.history.assign(json.dumps(self.evaluations + [evaluation]))
        self.log(f'epoch {epoch + 1}/{config.epochs} eval: accuracy {evaluation["accuracy"]:.2f}% '
                 f'AP msp {evaluation["ap"]["msp"]:.2f}% odin {evaluation["ap"]["odin"]:.2f}% '
                 f'(skew {evaluation["skew"]:.2f}%)')
      if self.manager:
        self.manager.save(checkpoint_number=epoch + 1)

  def train_epoch(self, epoch: int) -> dict:
    config = self.config
    dataset = self.strategy.experimental_distribute_dataset(self.pipeline.train_dataset(epoch))
    iterator = iter(dataset)
    totals = np.zeros(len(TRAIN_STATS))
    step, start, last_log = 0, time.time(), time.time()
    images_per_step = config.batch_size * (2 if self.aux_task else 1)
    while step < self.steps_per_epoch:
      num_steps = min(config.steps_per_loop, self.steps_per_epoch - step)
      chunk = self._train_loop(iterator, tf.constant(num_steps)).numpy()
      step += num_steps
      if not np.all(np.isfinite(chunk)):
        global_step = epoch * self.steps_per_epoch + step
        raise TrainingDiverged(
            f'training diverged: loss {chunk[0] / max(chunk[2], 1):.4g} (classification) / '
            f'{chunk[3] / max(chunk[5], 1):.4g} (auxiliary) by step {global_step} of epoch '
            f'{epoch + 1}; the last checkpoint is kept: lower --learning_rate and rerun')
      totals += chunk
      now = time.time()
      if now - last_log >= LOG_INTERVAL_SECONDS or step == self.steps_per_epoch:
        last_log = now
        self.log(self._progress_line(epoch, step, totals, step * images_per_step / (now - start)))
    return _train_summary(totals)

  def _progress_line(self, epoch, step, totals, images_per_second):
    stats = _train_summary(totals)
    line = (f'epoch {epoch + 1}/{self.config.epochs} step {step}/{self.steps_per_epoch} '
            f'loss {stats["loss"]:.4f} acc {stats["accuracy"]:.2f}%')
    if self.aux_task:
      line += f' | {self.aux_task.name} loss {stats["aux_loss"]:.4f} acc {stats["aux_accuracy"]:.2f}%'
    lr = float(self.cls_optimizer.learning_rate)
    return line + f' | lr {lr:.4g} | {images_per_second:.0f} img/s'

  def evaluate(self):
    """Scores every evaluation example; returns (metrics in %, per-example arrays)."""
    dataset = self.strategy.experimental_distribute_dataset(
        self.pipeline.eval_dataset(self.config.eval_batch_size))
    parts = {}
    for batch in dataset:
      for key, value in self._eval_step(batch).items():
        parts.setdefault(key, []).extend(
            v.numpy() for v in self.strategy.experimental_local_results(value))
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    return summarize_scores(arrays), arrays


def summarize_scores(arrays: dict) -> dict:
  """Accuracy on known classes, skew and AP per score, all in percent."""
  is_anomaly = arrays['label'] < 0
  known = ~is_anomaly
  accuracy = float(np.mean(arrays['prediction'][known] == arrays['label'][known]))
  return dict(
      accuracy=100.0 * accuracy,
      skew=100.0 * float(metrics.skew(is_anomaly)),
      ap={name: 100.0 * float(metrics.average_precision(is_anomaly, arrays[name]))
          for name in ('msp', 'odin')},
      num_examples=int(len(is_anomaly)),
      num_anomalies=int(is_anomaly.sum()))


def _train_summary(totals) -> dict:
  loss, correct, count, aux_loss, aux_correct, aux_count = totals
  summary = dict(loss=float(loss / max(count, 1)), accuracy=float(100 * correct / max(count, 1)))
  if aux_count:
    summary.update(aux_loss=float(aux_loss / aux_count),
                   aux_accuracy=float(100 * aux_correct / aux_count))
  return summary


def final_metrics(evaluations: list[dict], epochs: int, window: int) -> dict:
  """The metrics averaged over the evaluations after each of the last `window` epochs."""
  last = [e for e in evaluations if e['epoch'] > epochs - window]
  if not last:
    return {}
  return dict(
      epochs=[e['epoch'] for e in last],
      accuracy=float(np.mean([e['accuracy'] for e in last])),
      skew=last[-1]['skew'],
      ap={name: float(np.mean([e['ap'][name] for e in last])) for name in last[-1]['ap']})



def default_workdir(config: TrainConfig) -> str:
  return os.path.join('runs', config.dataset,
                      f'holdout{config.holdout}_{config.aux}_seed{config.seed}')


def check_workdir_config(workdir: str, config: TrainConfig) -> None:
  """Refuses to resume a workdir whose run was started with settings that change its result."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as handle:
    saved = json.load(handle)
  current = json.loads(json.dumps(config.to_dict()))  # tuples become lists, as when saved
  differences = [f'{key}={saved.get(key)!r} there, {value!r} now' for key, value in current.items()
                 if key not in RESUMABLE_DIFFERENCES and saved.get(key) != value]
  if differences:
    raise UsageError(f'--workdir={workdir} holds a run with other settings '
                     f'({"; ".join(differences)}): use another --workdir')


def train_and_evaluate(config: TrainConfig, log=print) -> dict:
  """Trains (or resumes) one hold-out run and writes `results.json` in its workdir."""
  config = config.resolved()
  source = load_source(config.dataset, config.data_dir, config.image_size)
  split = make_holdout(source, config.holdout, config.validation, config.seed)
  workdir = config.workdir or default_workdir(config)
  strategy = make_strategy(config.strategy)
  trainer = Trainer(config, split, strategy, os.path.join(workdir, 'checkpoints'), log)
  # After the Trainer has checked every flag, so that a bad one is named as such rather than
  # reported as a difference from the workdir's settings.
  check_workdir_config(workdir, config)
  log(f'{config.dataset}: anomaly = class {split.holdout_index} ({split.holdout_name}); '
      f'{len(split.train)} training images in {split.num_classes} classes, '
      f'{len(split.evaluation)} {"validation" if config.validation else "test"} examples; '
      f'WRN-{config.depth}-{config.width}, aux={config.aux}, {strategy.num_replicas_in_sync} '
      f'replica(s); workdir {workdir}')
  write_json_atomic(os.path.join(workdir, CONFIG_FILE), config.to_dict())
  trainer.restore()
  trainer.train()
  evaluations = trainer.evaluations
  if not evaluations:  # eval_every=0 and final_window=0: still report the trained model.
    evaluations = [dict(epoch=config.epochs, **trainer.evaluate()[0])]
  results = build_results(config, split.holdout_index, split.holdout_name, evaluations,
                          final_metrics(evaluations, config.epochs, config.final_window))
  write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
  log(summary_table(results))
  return results
