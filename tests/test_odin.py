"""ODIN's input step against finite differences, and on a Wide ResNet."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfanom import scoring
from tfanom.models import WRNConfig, build_wide_resnet


def softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


class TinyNet:
  """A smooth two-layer network in float64: [B, 3, 3, 2] images -> 5 logits."""

  def __init__(self, seed=0):
    rng = np.random.default_rng(seed)
    self.w1 = rng.normal(size=(18, 16))
    self.w2 = rng.normal(size=(16, 5)) * 3.0

  def __call__(self, images):
    flat = tf.reshape(images, (-1, 18))
    return tf.matmul(tf.tanh(tf.matmul(flat, self.w1)), self.w2)

  def numpy(self, images):
    return np.tanh(images.reshape(-1, 18) @ self.w1) @ self.w2


def log_max_softmax(net, images, temperature):
  return np.log(softmax(net.numpy(images) / temperature).max(axis=-1))


def finite_difference_gradient(net, images, temperature, step=1e-6):
  gradient = np.zeros_like(images)
  for index in np.ndindex(images.shape[1:]):
    up, down = images.copy(), images.copy()
    up[(slice(None), *index)] += step
    down[(slice(None), *index)] -= step
    gradient[(slice(None), *index)] = (log_max_softmax(net, up, temperature)
                                       - log_max_softmax(net, down, temperature)) / (2 * step)
  return gradient


@pytest.fixture
def images():
  return np.random.default_rng(1).uniform(size=(4, 3, 3, 2))


@pytest.mark.parametrize('temperature', [1.0, 1000.0])
def test_odin_input_gradient_matches_finite_differences(images, temperature):
  net = TinyNet()
  gradient = scoring.odin_input_gradient(net, tf.constant(images), temperature).numpy()
  reference = finite_difference_gradient(net, images, temperature)
  assert gradient.shape == images.shape
  # The score is computed in float32, hence the tolerance; every example has its own gradient.
  scale = np.abs(reference).max()
  np.testing.assert_allclose(gradient, reference, rtol=1e-3, atol=1e-4 * scale)


def test_odin_is_the_perturbed_temperature_scaled_msp(images):
  net, temperature, epsilon = TinyNet(seed=2), 10.0, 1e-3
  gradient = finite_difference_gradient(net, images, temperature)
  perturbed = images - epsilon * np.sign(-gradient)
  expected = -softmax(net.numpy(perturbed) / temperature).max(axis=-1)
  scores = scoring.odin(net, tf.constant(images), temperature, epsilon).numpy()
  np.testing.assert_allclose(scores, expected, rtol=1e-5)
  # The step raises the max softmax of every example: scores fall below those of the raw input.
  unperturbed = -softmax(net.numpy(images) / temperature).max(axis=-1)
  assert np.all(scores < unperturbed)


def test_odin_on_a_wide_resnet():
  keras.utils.set_random_seed(0)
  model = build_wide_resnet(WRNConfig(depth=10, width=1, num_classes=3), (8, 8, 3),
                            np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32))
  images = tf.random.stateless_uniform((4, 8, 8, 3), seed=[0, 1])
  logits_fn = lambda x: model(x, training=False)  # noqa: E731
  temperature = 1000.0
  gradient = scoring.odin_input_gradient(logits_fn, images, temperature)
  assert gradient.shape == images.shape and np.all(np.isfinite(gradient))
  scores = scoring.odin(logits_fn, images, temperature, epsilon=0.0).numpy()
  np.testing.assert_allclose(
      scores, -softmax(model(images).numpy().astype(np.float64) / temperature).max(-1),
      rtol=1e-6)
  assert np.all(scoring.odin(logits_fn, images, temperature, 0.01).numpy() < scores)
