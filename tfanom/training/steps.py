"""The per-replica maths of training: the auxiliary and classification steps, weight decay, the
optimizer update, and the traced loop that runs several iterations per call.

Each iteration takes an auxiliary step (its own SGD-Nesterov optimizer, trunk + auxiliary head) and
then a classification step (another optimizer, trunk + class head). Losses are divided by the
global batch, so any number of replicas computes the same update.
"""

import keras
import tensorflow as tf

from tfanom.auxiliary import aux_norm_task
from tfanom.config import TrainConfig
from tfanom.data.holdout import HoldoutSplit
from tfanom.data.pipeline import InputPipeline, to_unit_range
from tfanom.errors import UsageError
from tfanom.models import build_model
from tfanom.models.mixed_precision import make_optimizer, precision_scope
from tfanom.models.trunk import weight_decay_variables
from tfanom.training.schedules import learning_rate_schedule

# What an iteration returns, summed over the replicas: the classification step's, then the
# auxiliary step's (zeros without an auxiliary task).
TRAIN_STATS = ('loss', 'correct', 'count', 'aux_loss', 'aux_correct', 'aux_count')


def check_xla(config: TrainConfig, strategy: tf.distribute.Strategy):
  """Refuses --xla where it cannot compile the step."""
  if config.xla and strategy.num_replicas_in_sync > 1:
    local_devices = strategy.extended.worker_devices
    if len(local_devices) > 1 and any('CPU' in device for device in local_devices):
      # XLA compiles for one CPU device and cannot reach the other replicas' variables.
      raise UsageError(f'--xla cannot compile for {len(local_devices)} replicas on CPU '
                       'devices: use --strategy=default on CPUs, or run on GPUs')


class Steps:
  """One run's model, auxiliary task and two optimizers, and a training iteration on them."""

  def __init__(self, config: TrainConfig, split: HoldoutSplit, pipeline: InputPipeline, aux_task,
               strategy: tf.distribute.Strategy):
    """Builds the model, the auxiliary task's layers and both optimizers under `strategy`; the
    Keras seed must be set before, and before `aux_task` was made."""
    self.config, self.aux_task = config, aux_task
    self.aux_batch_size = pipeline.aux_batch_size
    self.aux_norm_task = aux_norm_task(config)
    self.aux_variables, self.aux_optimizer = [], None
    with strategy.scope(), precision_scope(config.mixed_precision):
      self.model = build_model(config, split.num_classes, pipeline.image_shape, split.mean,
                               split.std, train_images=split.train.images)
      self.shift_ids = self.model.norm_shifts()
      schedule = learning_rate_schedule(config, pipeline.steps_per_epoch)
      # Before the auxiliary task adds its own normalisation parameters to the trunk.
      self.cls_variables = self.model.trunk_variables() + self.model.class_head.trainable_variables
      self.cls_optimizer = self._optimizer(schedule, self.cls_variables)
      if aux_task:
        aux_task.build(self.model, pipeline.image_shape)
        self.aux_variables = aux_task.train_variables(self.model, self.aux_norm_task)
        self.aux_optimizer = self._optimizer(schedule, self.aux_variables)

  def _optimizer(self, schedule, variables):
    config = self.config
    optimizer = make_optimizer(
        keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True),
        config.mixed_precision)
    optimizer.build(variables)
    return optimizer

  def decay(self, variables):
    """weight_decay * sum(w**2) / 2 over the decayed variables. Batch-norm shifts are divided by
    --norm_shift_lr_scale, which `apply` multiplies their gradients by: their learning rate is
    scaled, their decay per step is not (airbench)."""
    config = self.config
    if not config.weight_decay:
      return 0.0  # a zero times the L2 terms would still be computed, forward and backward
    decayed = variables if config.weight_decay_scope == 'all' else weight_decay_variables(variables)
    penalty = config.weight_decay * tf.add_n([
        tf.nn.l2_loss(v) / (config.norm_shift_lr_scale if id(v) in self.shift_ids else 1.0)
        for v in decayed])
    return tf.nn.scale_regularization_loss(penalty)

  def apply(self, optimizer, tape, loss, variables):
    """One optimizer step; batch-norm shifts move --norm_shift_lr_scale times as far (SGD with
    momentum is linear in the gradient, so scaling a gradient scales that variable's rate)."""
    gradients = tape.gradient(loss, variables)
    scale = self.config.norm_shift_lr_scale
    if scale != 1.0:
      gradients = [g * scale if id(v) in self.shift_ids else g
                   for g, v in zip(gradients, variables)]
    optimizer.apply(gradients, variables)

  def aux_step(self, images):
    """The auxiliary step on one replica's images; returns (summed loss, hits, terms)."""
    config = self.config
    with tf.GradientTape() as tape:
      per_term, hits = self.aux_task.loss(
          self.model, to_unit_range(images), training=True, norm_task=self.aux_norm_task,
          update_stats=config.aux_norm != 'protected')
      global_batch = self.aux_batch_size * self.aux_task.loss_terms_per_image
      # By default the trunk is decayed once per iteration, in the classification step.
      decayed = (self.aux_variables if config.aux_decays_trunk
                 else self.aux_task.trainable_variables)
      loss = (config.aux_weight
              * tf.nn.compute_average_loss(per_term, global_batch_size=global_batch)
              + self.decay(decayed))
      loss = _scaled(self.aux_optimizer, loss)
    self.apply(self.aux_optimizer, tape, loss, self.aux_variables)
    correct = tf.reduce_sum(tf.cast(hits, tf.float32))
    return tf.reduce_sum(per_term), correct, tf.cast(tf.size(per_term), tf.float32)

  def cls_step(self, images, labels):
    """The classification step on one replica's batch; returns (summed loss, hits, examples)."""
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
              + self.decay(self.cls_variables))
      loss = _scaled(self.cls_optimizer, loss)
    self.apply(self.cls_optimizer, tape, loss, self.cls_variables)
    correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))
    return tf.reduce_sum(per_example), correct, tf.cast(tf.size(labels), tf.float32)

  def replica_step(self, batch):
    """One iteration on one replica: the TRAIN_STATS of its auxiliary and classification steps."""
    aux = ((0.0, 0.0, 0.0) if self.aux_task is None else self.aux_step(batch['aux_image']))
    cls = self.cls_step(batch['image'], batch['label'])
    return tf.stack([*cls, *aux])


def make_train_loop(steps: Steps, strategy: tf.distribute.Strategy):
  """`train_loop(iterator, num_steps)`: num_steps iterations in one traced call; returns their
  TRAIN_STATS summed over the replicas."""
  # Iterator ops cannot be compiled: XLA takes the step, the loop around it stays a graph.
  replica_step = (tf.function(steps.replica_step, jit_compile=True) if steps.config.xla
                  else steps.replica_step)

  @tf.function
  def train_loop(iterator, num_steps):
    totals = tf.zeros([len(TRAIN_STATS)])
    for _ in tf.range(num_steps):
      per_replica = strategy.run(replica_step, args=(next(iterator),))
      totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return totals

  return train_loop


def train_summary(totals) -> dict:
  """Mean losses and accuracies (%) from summed TRAIN_STATS; the auxiliary ones if it ran."""
  loss, correct, count, aux_loss, aux_correct, aux_count = totals
  summary = dict(loss=float(loss / max(count, 1)), accuracy=float(100 * correct / max(count, 1)))
  if aux_count:
    summary.update(aux_loss=float(aux_loss / aux_count),
                   aux_accuracy=float(100 * aux_correct / aux_count))
  return summary


def _scaled(optimizer, loss):
  """The loss a LossScaleOptimizer's `apply` expects gradients of (float16); others take it as is."""
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss
