"""Each anomaly score against a small numpy reference, on a synthetic problem with anomalies, and
ODIN's input step against finite differences and on a Wide ResNet."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.covariance import EmpiricalCovariance

from tfanom.anomaly import metrics, scores
from tfanom.auxiliary.rotation import NUM_ROTATIONS, rotate_batch
from tfanom.inference.features import FeatureStatistics
from tfanom.models.wide_resnet import WRNConfig, build_wide_resnet

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(0.0, 3.0, (16, 5)).astype(np.float32)


def np_softmax(logits):
  shifted = logits - logits.max(-1, keepdims=True)
  return np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)


def np_logsumexp(logits):
  top = logits.max(-1)
  return top + np.log(np.exp(logits - top[:, None]).sum(-1))


def test_msp():
  np.testing.assert_allclose(scores.msp(LOGITS), -np_softmax(LOGITS).max(-1), rtol=1e-6)


def test_energy():
  np.testing.assert_allclose(scores.energy(LOGITS), -np_logsumexp(LOGITS), rtol=1e-6)
  np.testing.assert_allclose(scores.energy(LOGITS, 2.0), -2.0 * np_logsumexp(LOGITS / 2.0),
                             rtol=1e-6)


def test_max_logit():
  np.testing.assert_array_equal(scores.max_logit(LOGITS), -LOGITS.max(-1))


def test_odin_matches_the_closed_form_step_of_a_linear_model():
  weights = RNG.normal(size=(6, 4)).astype(np.float32)
  inputs = RNG.random((10, 6)).astype(np.float32)
  temperature, epsilon = 10.0, 0.05
  # d/dx [l_y / T - logsumexp(l / T)] for l = x W is (W[:, y] - W p) / T with p = softmax(l / T).
  logits = inputs @ weights
  probabilities = np_softmax(logits / temperature)
  top = logits.argmax(-1)
  gradient = (weights.T[top] - probabilities @ weights.T) / temperature
  perturbed = inputs - epsilon * np.sign(-gradient)
  expected = -np_softmax(perturbed @ weights / temperature).max(-1)
  actual = scores.odin(lambda x: tf.matmul(x, weights), tf.constant(inputs), temperature,
                        epsilon)
  np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_odin_without_a_step_is_the_temperature_scaled_msp():
  actual = scores.odin(lambda x: x, tf.constant(LOGITS), 1000.0, 0.0)
  np.testing.assert_allclose(actual, -np_softmax(LOGITS / 1000.0).max(-1), rtol=1e-6)


def class_features(num_classes=3, per_class=40, dim=6, dead=1):
  """Gaussian class clusters; the last `dead` dimensions are constant, as dead ReLU units are."""
  labels = np.repeat(np.arange(num_classes), per_class)
  centres = RNG.normal(0.0, 3.0, (num_classes, dim))
  features = centres[labels] + RNG.normal(size=(len(labels), dim)) * RNG.uniform(0.5, 2.0, dim)
  features[:, dim - dead:] = 0.0
  return features.astype(np.float32), labels


def test_mahalanobis_matches_the_tied_covariance_of_scikit_learn():
  features, labels = class_features()
  statistics = FeatureStatistics.fit(features, labels, 3)
  features = features.astype(np.float64)
  means = np.stack([features[labels == c].mean(0) for c in range(3)])
  # Lee et al.'s code fits EmpiricalCovariance to the class-centred features.
  precision = EmpiricalCovariance(assume_centered=True).fit(
      features - means[labels]).precision_
  np.testing.assert_allclose(statistics.class_means, means, rtol=1e-6)
  np.testing.assert_allclose(statistics.precision, precision, rtol=1e-5, atol=1e-8)
  queries = RNG.normal(0.0, 3.0, (9, 6)).astype(np.float32)
  differences = queries[:, None, :].astype(np.float64) - means[None]
  expected = np.einsum('bcd,de,bce->bc', differences, precision, differences).min(-1)
  actual = scores.mahalanobis(queries, statistics.class_means, statistics.precision)
  np.testing.assert_allclose(actual, expected, rtol=1e-9)


def test_knn_is_the_distance_to_the_kth_nearest_normalised_training_feature():
  features, labels = class_features()
  statistics = FeatureStatistics.fit(features, labels, 3)
  queries = RNG.normal(0.0, 3.0, (7, 6)).astype(np.float32)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  distances = np.linalg.norm(unit(queries)[:, None] - unit(features)[None], axis=-1)
  for k in (1, 5, 50):
    np.testing.assert_allclose(scores.knn(queries, statistics.bank, k),
                               np.sort(distances, axis=1)[:, k - 1], atol=1e-5)
  # k is capped at the size of the bank.
  np.testing.assert_allclose(scores.knn(queries, statistics.bank, 10_000),
                             distances.max(axis=1), atol=1e-5)


def test_rotation_sums_the_negative_log_likelihood_over_the_rotations():
  batch = 3
  logits = RNG.normal(size=(NUM_ROTATIONS * batch, NUM_ROTATIONS)).astype(np.float32)
  labels = np.repeat(np.arange(NUM_ROTATIONS), batch)
  nll = -np.log(np_softmax(logits)[np.arange(len(labels)), labels])
  expected = nll.reshape(NUM_ROTATIONS, batch).sum(0)
  np.testing.assert_allclose(scores.rotation(logits, labels, NUM_ROTATIONS), expected,
                             rtol=1e-5)


def test_feature_statistics_cache_is_keyed_by_fingerprint(tmp_path):
  features, labels = class_features()
  statistics = FeatureStatistics.fit(features, labels, 3)
  path = str(tmp_path / 'stats.npz')
  statistics.save(path, 'model-a')
  loaded = FeatureStatistics.load(path, 'model-a')
  np.testing.assert_array_equal(loaded.bank, statistics.bank)
  np.testing.assert_array_equal(loaded.precision, statistics.precision)
  assert FeatureStatistics.load(path, 'model-b') is None
  assert FeatureStatistics.load(str(tmp_path / 'missing.npz'), 'model-a') is None
  (tmp_path / 'corrupt.npz').write_bytes(b'not a zip file')
  assert FeatureStatistics.load(str(tmp_path / 'corrupt.npz'), 'model-a') is None


def test_feature_statistics_need_every_class():
  features, labels = class_features()
  with pytest.raises(ValueError, match=r'classes \[3\]'):
    FeatureStatistics.fit(features, labels, 4)


# A synthetic problem: two known classes far apart along x, a linear classifier separating them,
# and anomalies midway between the clusters, where the classifier is unsure and no training
# feature lies.
CENTRE = 4.0
CLASSIFIER = np.array([[-1.0, 1.0], [0.0, 0.0]], np.float32)  # logits = x @ CLASSIFIER


def two_clusters(per_class, anomalies):
  labels = np.repeat([0, 1], per_class)
  normal = np.stack([np.where(labels == 0, -CENTRE, CENTRE), np.zeros(len(labels))], 1)
  normal += RNG.normal(0.0, 0.5, normal.shape)
  outliers = RNG.normal(0.0, 0.5, (anomalies, 2))
  return normal.astype(np.float32), labels, outliers.astype(np.float32)


def assert_detects(normal_scores, anomaly_scores):
  values = np.concatenate([np.asarray(normal_scores), np.asarray(anomaly_scores)])
  is_anomaly = np.arange(len(values)) >= len(normal_scores)
  assert float(metrics.auroc(is_anomaly, values)) > 0.95


@pytest.mark.parametrize('name', ['msp', 'energy', 'max_logit'])
def test_logit_scores_are_higher_on_anomalies(name):
  normal, _, anomalies = two_clusters(100, 20)
  score = getattr(scores, name)
  assert_detects(score(normal @ CLASSIFIER), score(anomalies @ CLASSIFIER))


def test_odin_is_higher_on_anomalies():
  normal, _, anomalies = two_clusters(100, 20)
  score = lambda x: scores.odin(lambda v: tf.matmul(v, CLASSIFIER), tf.constant(x))
  assert_detects(score(normal), score(anomalies))


@pytest.mark.parametrize('name', ['mahalanobis', 'knn'])
def test_feature_scores_are_higher_on_anomalies(name):
  train, labels, _ = two_clusters(200, 0)
  statistics = FeatureStatistics.fit(train, labels, 2)
  normal, _, anomalies = two_clusters(100, 20)
  if name == 'mahalanobis':
    score = lambda x: scores.mahalanobis(x, statistics.class_means, statistics.precision)
  else:
    score = lambda x: scores.knn(x, statistics.bank, k=10)
  assert_detects(score(normal), score(anomalies))


def test_rotation_is_higher_on_images_without_an_orientation():
  # Normal images have a bright top row, so a head that reads off which edge is bright knows
  # their rotation; anomalies are uniform and look the same under every rotation.
  normal = np.zeros((20, 8, 8, 1), np.float32)
  normal[:, 0] = 1.0
  normal += RNG.uniform(0.0, 0.2, normal.shape).astype(np.float32)
  anomalies = RNG.uniform(0.0, 0.2, (5, 8, 8, 1)).astype(np.float32)

  def score(images):
    rotated, labels = rotate_batch(tf.constant(images))
    # rot90 turns counter-clockwise: the top row moves to the left column, then the bottom row...
    edges = tf.stack([rotated[:, 0, :, 0], rotated[:, :, 0, 0], rotated[:, -1, :, 0],
                      rotated[:, :, -1, 0]], axis=1)
    return scores.rotation(10.0 * tf.reduce_mean(edges, axis=-1), labels, NUM_ROTATIONS)

  assert_detects(score(normal), score(anomalies))


# ODIN against finite differences --------------------------------------------------------------------

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
  gradient = scores.odin_input_gradient(net, tf.constant(images), temperature).numpy()
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
  score_values = scores.odin(net, tf.constant(images), temperature, epsilon).numpy()
  np.testing.assert_allclose(score_values, expected, rtol=1e-5)
  # The step raises the max softmax of every example: the scores fall below those of the raw input.
  unperturbed = -softmax(net.numpy(images) / temperature).max(axis=-1)
  assert np.all(score_values < unperturbed)


def test_odin_on_a_wide_resnet():
  keras.utils.set_random_seed(0)
  model = build_wide_resnet(WRNConfig(depth=10, width=1, num_classes=3), (8, 8, 3),
                            np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32))
  images = tf.random.stateless_uniform((4, 8, 8, 3), seed=[0, 1])
  logits_fn = lambda x: model(x, training=False)  # noqa: E731
  temperature = 1000.0
  gradient = scores.odin_input_gradient(logits_fn, images, temperature)
  assert gradient.shape == images.shape and np.all(np.isfinite(gradient))
  score_values = scores.odin(logits_fn, images, temperature, epsilon=0.0).numpy()
  np.testing.assert_allclose(
      score_values, -softmax(model(images).numpy().astype(np.float64) / temperature).max(-1),
      rtol=1e-6)
  assert np.all(scores.odin(logits_fn, images, temperature, 0.01).numpy() < score_values)
