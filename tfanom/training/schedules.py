"""The learning-rate schedules both optimizers of a run follow."""

import keras
import tensorflow as tf

from tfanom.config import TrainConfig


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
  """--lr_schedule: `triangle`, or the rate multiplied by --lr_decay_factor at each of
  --lr_decay_fractions of the run's steps."""
  total_steps = config.epochs * steps_per_epoch
  if config.lr_schedule == 'triangle':
    return TriangleSchedule(config.learning_rate, total_steps)
  boundaries = [int(round(f * total_steps)) for f in config.lr_decay_fractions]
  values = [config.learning_rate * config.lr_decay_factor ** i for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
