"""What the networks share: task-aware batch normalisation, the input normalisation, the class head
and the split of trainable variables between the two alternating steps.

A trunk takes pixels in [0, 1] and normalises them by the training set's per-channel statistics
inside the model, so ODIN's input step and exported SavedModels work in that space too. Subclasses
(`WideResNet`, `FastNet`) define `features` and create `class_head`.
"""

import keras
import tensorflow as tf

CLASSIFICATION_TASK = 0  # index of the classification task's normalisation parameters


class TaskBatchNorm(keras.layers.Layer):
  """Batch normalisation with one set of scale, shift and moving statistics per task.

  `update_stats=False` normalises with batch statistics but leaves the moving ones alone: the
  auxiliary step uses it so that test-time statistics come from unrotated images only.
  """

  def __init__(self, num_tasks=1, momentum=0.9, epsilon=1e-5, scale=True, **kwargs):
    super().__init__(**kwargs)
    self.num_tasks = num_tasks
    self.momentum = momentum
    self.epsilon = epsilon
    self.scale = scale  # False: no learned scale (airbench), the shift alone

  def build(self, input_shape):
    channels = (input_shape[-1],)

    def weights(name, initializer, trainable):
      return [self.add_weight(shape=channels, name=f'{name}_{task}', initializer=initializer,
                              trainable=trainable, autocast=False,
                              aggregation='none' if trainable else 'mean')
              for task in range(self.num_tasks)]

    self.gamma = weights('gamma', 'ones', True) if self.scale else None
    self.beta = weights('beta', 'zeros', True)
    self.moving_mean = weights('moving_mean', 'zeros', False)
    self.moving_variance = weights('moving_variance', 'ones', False)

  def task_variables(self, task):
    return [self.gamma[task], self.beta[task]] if self.scale else [self.beta[task]]

  def call(self, inputs, training=False, task=CLASSIFICATION_TASK, update_stats=True):
    task = min(task, self.num_tasks - 1)
    compute_dtype = inputs.dtype
    inputs = tf.cast(inputs, tf.float32)
    gamma = self.gamma[task] if self.scale else tf.ones_like(self.beta[task])
    # The fused kernel normalises in one pass over the activations (several times faster than
    # moments + batch_normalization on CPU and GPU), with the same biased batch variance.
    if training:
      outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, gamma, self.beta[task], epsilon=self.epsilon, is_training=True)
      if update_stats:
        # The kernel returns the unbiased variance; the moving statistics average the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = variance * (count - 1.0) / count
        for moving, value in ((self.moving_mean[task], mean),
                              (self.moving_variance[task], variance)):
          moving.assign(moving * self.momentum + tf.stop_gradient(value) * (1.0 - self.momentum))
    else:
      outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
          inputs, gamma, self.beta[task], self.moving_mean[task],
          self.moving_variance[task], epsilon=self.epsilon, is_training=False)
    return tf.cast(outputs, compute_dtype)


class Trunk(keras.Model):
  """A network with `features(images, training, task, update_stats)` and a linear `class_head`."""

  def build_normalization(self, mean, std):
    """Creates the input normalisation from training-set statistics (pixels in [0, 1])."""
    self.pixel_mean = self.add_weight(shape=(len(mean),), name='pixel_mean', trainable=False,
                                      initializer=keras.initializers.Constant(mean))
    self.pixel_std = self.add_weight(shape=(len(std),), name='pixel_std', trainable=False,
                                     initializer=keras.initializers.Constant(std))

  def normalize(self, images):
    return (images - self.pixel_mean) / self.pixel_std

  def call(self, images, training=False):
    return self.class_head(self.features(images, training=training))

  def trunk_variables(self, task=CLASSIFICATION_TASK):
    """Trainable trunk variables that a step of `task` updates (its own normalisation only)."""
    excluded = {id(v) for layer in self.norm_layers()
                for other in range(layer.num_tasks) if other != min(task, layer.num_tasks - 1)
                for v in layer.task_variables(other)}
    head = {id(v) for v in self.class_head.trainable_variables}
    return [v for v in self.trainable_variables if id(v) not in excluded | head]

  def norm_layers(self):
    return [layer for layer in self._flatten_layers() if isinstance(layer, TaskBatchNorm)]

  def norm_shifts(self) -> set:
    """ids of the batch-norm shift variables, whose learning rate --norm_shift_lr_scale scales."""
    return {id(v) for layer in self.norm_layers() for v in layer.beta}


def checkpoint_variables(layer: keras.layers.Layer) -> list:
  """Every variable of a Keras layer or model, for `tf.train.Checkpoint`, matched by position.

  tf.train.Checkpoint does not see inside Keras 3 layers (it would save only variables set
  directly as attributes), so checkpoints list the variables explicitly, in Keras' deterministic
  creation order: weights, batch-norm moving statistics and the dropout seed generators' states,
  without which a resumed run would draw other dropout masks than an uninterrupted one. Paths
  would not do as keys: Keras numbers unnamed layers per process.
  """
  return list(layer.variables)


def weight_decay_variables(variables):
  """Convolution and dense kernels; biases and normalisation parameters are not decayed."""
  return [v for v in variables if v.name == 'kernel']
