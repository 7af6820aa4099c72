"""Anomaly scores of a trained classifier. Every score is oriented so that higher = more anomalous.

- MSP, the negative maximum softmax probability (Hendrycks & Gimpel 2017).
- ODIN (Liang et al. 2018): temperature scaling plus one input step that raises the
  temperature-scaled maximum softmax probability; anomalies rise less than normal examples.
"""

import tensorflow as tf

ODIN_TEMPERATURE = 1000.0
ODIN_EPSILON = 5e-5


def msp(logits):
  return -tf.reduce_max(tf.nn.softmax(logits, axis=-1), axis=-1)


def odin_input_gradient(logits_fn, images, temperature=ODIN_TEMPERATURE):
  """Gradient, with respect to the input, of the log of the temperature-scaled max softmax."""
  with tf.GradientTape() as tape:
    tape.watch(images)
    logits = tf.cast(logits_fn(images), tf.float32)
    log_max_softmax = tf.reduce_max(tf.nn.log_softmax(logits / temperature, axis=-1), axis=-1)
    # Examples are independent, so the gradient of the sum is each example's own gradient.
    total = tf.reduce_sum(log_max_softmax)
  return tape.gradient(total, images)


def odin(logits_fn, images, temperature=ODIN_TEMPERATURE, epsilon=ODIN_EPSILON):
  """ODIN score of images in [0, 1].

  x' = x - eps * sign(-grad_x log max_k softmax(f(x)/T)_k). The official code takes this step on
  normalised inputs with eps divided by the per-channel std; our models normalise internally, so
  the same step is exactly eps on [0, 1] pixels.
  """
  gradient = odin_input_gradient(logits_fn, images, temperature)
  perturbed = images - epsilon * tf.sign(-gradient)
  logits = tf.cast(logits_fn(perturbed), tf.float32)
  return -tf.reduce_max(tf.nn.softmax(logits / temperature, axis=-1), axis=-1)
