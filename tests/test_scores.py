"""Each anomaly score against a small numpy reference, on a synthetic problem with anomalies, and
ODIN's input step against finite differences and on a Wide ResNet; the registry that declares
them (`tfanom.anomaly.REGISTRY`) and applies them (`tfanom.inference.scorer.Batch`)."""

import dataclasses
import inspect
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.covariance import EmpiricalCovariance

from tfanom.anomaly import (FEATURE_SCORES, FITTED, REGISTRY, ROTATION_SCORES, SCORES,
                            available_scores, metrics, scores)
from tfanom.auxiliary.rotation import NUM_ROTATIONS, rotate_batch
from tfanom.config import TrainConfig
from tfanom.errors import UsageError
from tfanom.inference.features import FeatureStatistics
from tfanom.inference.scorer import Batch, Scorer, fitted_inputs
from tfanom.models.wide_resnet import WRNConfig, build_wide_resnet

ROOT = pathlib.Path(__file__).resolve().parent.parent
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


def class_head(dim=6, num_classes=3):
  return RNG.normal(size=(dim, num_classes)), RNG.normal(size=num_classes)


def fit(features, labels, num_classes):
  return FeatureStatistics.fit(features, labels, num_classes, *class_head(features.shape[1],
                                                                          num_classes))


def test_mahalanobis_matches_the_tied_covariance_of_scikit_learn():
  features, labels = class_features()
  statistics = fit(features, labels, 3)
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
  statistics = fit(features, labels, 3)
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


# A synthetic problem: two known classes far apart along x, a linear classifier separating them,
# and anomalies midway between the clusters along x, where the classifier is unsure, and far along
# z, where no training feature lies.
CENTRE = 4.0
FAR = 6.0
CLASSIFIER = np.array([[-1.0, 1.0], [0.0, 0.0], [0.0, 0.0]], np.float32)  # logits = x @ W
NO_BIAS = np.zeros(2, np.float32)


def two_clusters(per_class, anomalies):
  labels = np.repeat([0, 1], per_class)
  normal = np.stack([np.where(labels == 0, -CENTRE, CENTRE), np.zeros(len(labels)),
                     np.zeros(len(labels))], 1)
  normal += RNG.normal(0.0, 0.5, normal.shape)
  outliers = RNG.normal(0.0, 0.5, (anomalies, 3)) + [0.0, 0.0, FAR]
  return normal.astype(np.float32), labels, outliers.astype(np.float32)


def assert_detects(normal_scores, anomaly_scores):
  values = np.concatenate([np.asarray(normal_scores), np.asarray(anomaly_scores)])
  is_anomaly = np.arange(len(values)) >= len(normal_scores)
  assert float(metrics.auroc(is_anomaly, values)) > 0.95


@pytest.mark.parametrize('name', ['msp', 'energy', 'max_logit', 'gen'])
def test_logit_scores_are_higher_on_anomalies(name):
  normal, _, anomalies = two_clusters(100, 20)
  score = getattr(scores, name)
  assert_detects(score(normal @ CLASSIFIER), score(anomalies @ CLASSIFIER))


def test_odin_is_higher_on_anomalies():
  normal, _, anomalies = two_clusters(100, 20)
  score = lambda x: scores.odin(lambda v: tf.matmul(v, CLASSIFIER), tf.constant(x))
  assert_detects(score(normal), score(anomalies))


class Linear:
  """A model whose features are its inputs and whose logits are features @ CLASSIFIER: the
  functions a Batch calls."""

  def features_and_logits(self, images):
    features = tf.convert_to_tensor(images, tf.float32)
    return features, tf.matmul(features, CLASSIFIER) + NO_BIAS

  def odin_scores(self, images, temperature, epsilon):
    return scores.odin(lambda x: self.features_and_logits(x)[1], images, temperature, epsilon)

  def rotation_scores(self, images):  # a stand-in for a rotation head's NLL
    return tf.reduce_sum(tf.square(images), axis=-1)


def registry_scores(images, names, statistics=None, knn_k=10):
  inputs = dict(fitted_inputs(statistics, CLASSIFIER, NO_BIAS, knn_k), odin_temperature=1000.0,
                odin_epsilon=0.05)
  return {name: value.numpy()
          for name, value in Batch(Linear(), tf.constant(images), inputs).scores(names).items()}


@pytest.mark.parametrize('name', FEATURE_SCORES)
def test_feature_scores_are_higher_on_anomalies(name):
  train, labels, _ = two_clusters(200, 0)
  statistics = FeatureStatistics.fit(train, labels, 2, CLASSIFIER, NO_BIAS)
  normal, _, anomalies = two_clusters(100, 20)
  assert_detects(registry_scores(normal, [name], statistics)[name],
                 registry_scores(anomalies, [name], statistics)[name])


def test_the_registry_declares_each_score_once_with_its_formula():
  assert SCORES == tuple(REGISTRY) and len(set(SCORES)) == len(SCORES)
  assert set(FEATURE_SCORES) == {name for name, score in REGISTRY.items() if score.fitted}
  assert set(ROTATION_SCORES) == {'rotation', 'rotpred'}
  # The FITTED arguments are the fields of the feature statistics and the class head's weights.
  assert set(FITTED) == {field.name for field in dataclasses.fields(FeatureStatistics)} | {
      'kernel', 'bias'}
  for name, score in REGISTRY.items():
    if score.model_function:  # bound to the network by Scorer
      function = getattr(Scorer, score.model_function)
      assert list(inspect.signature(function).parameters)[1:] == [
          'images', *(['temperature', 'epsilon'] if name == 'odin' else [])]
    else:
      parameters = inspect.signature(getattr(scores, name)).parameters.values()
      required = [p for p in parameters if p.default is inspect.Parameter.empty]
      assert len(required) <= len(score.arguments) <= len(parameters), name
  assert available_scores(has_rotation=False) == tuple(
      name for name in SCORES if name not in ROTATION_SCORES)
  assert available_scores(has_rotation=True, has_statistics=False) == (
      'msp', 'odin', 'energy', 'max_logit', 'gen', 'rotation', 'rotpred')


def test_the_registry_applies_each_formula_to_its_arguments():
  train, labels, anomalies = two_clusters(50, 10)
  statistics = FeatureStatistics.fit(train, labels, 2, CLASSIFIER, NO_BIAS)
  logits = anomalies @ CLASSIFIER
  names = available_scores(has_rotation=True)
  computed = registry_scores(anomalies, names, statistics, knn_k=7)
  expected = dict(
      msp=scores.msp(logits), energy=scores.energy(logits), max_logit=scores.max_logit(logits),
      gen=scores.gen(logits),
      odin=scores.odin(lambda x: tf.matmul(x, CLASSIFIER), tf.constant(anomalies), 1000.0, 0.05),
      mahalanobis=scores.mahalanobis(anomalies, statistics.class_means, statistics.precision),
      rmds=scores.rmds(anomalies, statistics.class_means, statistics.precision,
                       statistics.background_mean, statistics.background_precision),
      knn=scores.knn(anomalies, statistics.bank, 7),
      vim=scores.vim(anomalies, logits, statistics.vim_origin, statistics.vim_residual_basis,
                     statistics.vim_alpha),
      fdbd=scores.fdbd(anomalies, logits, CLASSIFIER, statistics.background_mean),
      react_energy=scores.react_energy(anomalies, CLASSIFIER, NO_BIAS,
                                       statistics.react_threshold),
      rotation=np.sum(anomalies**2, -1),
      rotpred=scores.rotpred(logits, np.sum(anomalies**2, -1), NUM_ROTATIONS))
  assert list(computed) == list(names)
  for name in names:
    np.testing.assert_allclose(computed[name], expected[name], rtol=1e-6, err_msg=name)


def test_score_names_import_without_tensorflow():
  """experiments.report checks score names without TensorFlow (its start-up cost)."""
  code = ('import sys; import tfanom.anomaly, experiments.report; '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize('combined', [False, True], ids=['rotation', 'rotpred'])
def test_rotation_is_higher_on_images_without_an_orientation(combined):
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
    nll = scores.rotation(10.0 * tf.reduce_mean(edges, axis=-1), labels, NUM_ROTATIONS)
    if not combined:
      return nll
    # A classifier as sure of the anomalies as of the normal images: only the rotation tells.
    return scores.rotpred(tf.fill([len(images), 3], 2.0) * [1.0, 0.0, 0.0], nll, NUM_ROTATIONS)

  assert_detects(score(normal), score(anomalies))


# The newer scores against NumPy re-implementations of their papers' formulas ---------------------

def np_log_softmax(logits):
  return logits - np_logsumexp(logits)[:, None]


def test_rotpred_is_the_ss_ood_combined_score():
  batch, num_classes = 6, 5
  class_logits = RNG.normal(0.0, 2.0, (batch, num_classes)).astype(np.float32)
  rotation_logits = RNG.normal(0.0, 2.0, (NUM_ROTATIONS * batch, NUM_ROTATIONS)).astype(np.float32)
  labels = np.repeat(np.arange(NUM_ROTATIONS), batch)
  # ss-ood: kl_div(log_softmax(logits), uniform).sum(1) is sum_c u (log u - log p_c); the rotation
  # term is the KL from the one-hot true rotation, i.e. its NLL, averaged over the four rotations;
  # the code's score (higher = normal) is the classification term minus the rotation term.
  uniform = np.full(num_classes, 1.0 / num_classes)
  classification = (uniform * (np.log(uniform) - np_log_softmax(class_logits))).sum(1)
  rotation_kl = -np_log_softmax(rotation_logits)[np.arange(len(labels)), labels]
  in_distribution = classification - rotation_kl.reshape(NUM_ROTATIONS, batch).mean(0)
  nll = scores.rotation(rotation_logits, labels, NUM_ROTATIONS)
  np.testing.assert_allclose(scores.rotpred(class_logits, nll, NUM_ROTATIONS), -in_distribution,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('top', [100, 3])
def test_gen_is_the_generalised_entropy_of_the_top_probabilities(top):
  probabilities = np.sort(np_softmax(LOGITS.astype(np.float64)), axis=1)[:, -top:]
  expected = (probabilities**0.1 * (1 - probabilities)**0.1).sum(1)
  np.testing.assert_allclose(scores.gen(LOGITS, 0.1, top), expected, rtol=1e-5)


def np_mahalanobis(queries, mean, precision):
  difference = queries.astype(np.float64) - mean
  return np.einsum('bd,de,be->b', difference, precision, difference)


def test_rmds_is_relative_to_a_background_gaussian_fit_by_scikit_learn():
  features, labels = class_features()
  statistics = fit(features, labels, 3)
  features64 = features.astype(np.float64)
  means = np.stack([features64[labels == c].mean(0) for c in range(3)])
  precision = EmpiricalCovariance().fit(features64 - means[labels]).precision_
  background = EmpiricalCovariance().fit(features64)
  queries = RNG.normal(0.0, 3.0, (9, 6)).astype(np.float32)
  relative = np.stack([np_mahalanobis(queries, means[c], precision) for c in range(3)], 1)
  relative -= np_mahalanobis(queries, background.location_, background.precision_)[:, None]
  np.testing.assert_allclose(statistics.background_mean, background.location_, rtol=1e-9)
  np.testing.assert_allclose(statistics.background_precision, background.precision_, rtol=1e-6,
                             atol=1e-8)
  actual = scores.rmds(queries, statistics.class_means, statistics.precision,
                       statistics.background_mean, statistics.background_precision)
  np.testing.assert_allclose(actual, relative.min(1), rtol=1e-6, atol=1e-6)


def test_vim_matches_the_papers_recipe():
  features, labels = class_features(dim=8)
  kernel, bias = class_head(8, 3)
  statistics = FeatureStatistics.fit(features, labels, 3, kernel, bias)
  # The ViM code: the origin u = -pinv(W) b, the eigenvectors of the second moment about u, the
  # residual space past the top D/2, and alpha = mean max training logit / mean residual norm.
  weights = kernel.T  # [C, D], as torch's Linear stores it
  features64 = features.astype(np.float64)
  origin = -np.linalg.pinv(weights) @ bias
  moment = EmpiricalCovariance(assume_centered=True).fit(features64 - origin).covariance_
  values, vectors = np.linalg.eig(moment)
  residual = vectors.T[np.argsort(-values)[4:]].T
  train_logits = features64 @ weights.T + bias
  alpha = train_logits.max(1).mean() / np.linalg.norm((features64 - origin) @ residual, axis=1).mean()
  queries = RNG.normal(0.0, 3.0, (9, 8))
  logits = queries @ weights.T + bias
  expected = alpha * np.linalg.norm((queries - origin) @ residual, axis=1) - np_logsumexp(logits)
  np.testing.assert_allclose(statistics.vim_alpha, alpha, rtol=1e-8)
  actual = scores.vim(queries, logits, statistics.vim_origin, statistics.vim_residual_basis,
                      statistics.vim_alpha)
  np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_fdbd_is_the_distance_to_the_decision_boundaries_over_the_distance_to_the_mean():
  features, labels = class_features(dim=6, num_classes=4)
  kernel, bias = class_head(6, 4)
  statistics = FeatureStatistics.fit(features, labels, 4, kernel, bias)
  queries = RNG.normal(0.0, 3.0, (9, 6))
  logits = queries @ kernel + bias
  expected = []
  for query, row in zip(queries, logits):
    top = row.argmax()
    # The distance from the query to the hyperplane where classes top and c tie.
    distances = [abs(row[top] - row[c]) / np.linalg.norm(kernel[:, top] - kernel[:, c])
                 for c in range(4) if c != top]
    expected.append(-sum(distances) / np.linalg.norm(query - features.mean(0)))
  actual = scores.fdbd(queries, logits, kernel, statistics.background_mean)
  np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_react_energy_clips_at_the_90th_percentile_of_the_training_features():
  features, labels = class_features()
  kernel, bias = class_head(6, 3)
  statistics = FeatureStatistics.fit(features, labels, 3, kernel, bias)
  threshold = np.percentile(features, 90)
  queries = RNG.normal(0.0, 5.0, (9, 6)).astype(np.float32)
  expected = -np_logsumexp(np.minimum(queries, threshold) @ kernel + bias)
  np.testing.assert_allclose(statistics.react_threshold, threshold, rtol=1e-6)
  actual = scores.react_energy(queries, kernel, bias, statistics.react_threshold)
  np.testing.assert_allclose(actual, expected, rtol=1e-5)


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


def _linear_logits(weights):
  """The logits of [B, H, W, C] images in [0, 1] under a linear head on their flattened pixels."""
  return lambda images: tf.matmul(tf.reshape(images, [tf.shape(images)[0], -1]), weights)


def _odin_official_numpy(unit_images, weights, temperature, epsilon, mean, std):
  """rotation/main.py of Faruk-Ahmed/detecting_semantic_anomalies, in NumPy, for a linear head:
  0-255 pixels normalised with the per-channel mean and std (0-255 units); the sign of the
  cross-entropy gradient with respect to the normalised input, >= 0 taken as +1, divided by std;
  the normalised input minus epsilon times that; the negated max softmax at temperature T."""
  scaled = (255.0 * unit_images - mean) / std
  to_unit = lambda s: (s * std + mean) / 255.0  # noqa: E731  the network sees [0, 1] pixels
  flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
  logits = flat(to_unit(scaled)) @ weights
  probabilities = np_softmax(logits / temperature)
  predicted = logits.argmax(-1)
  # d CE(predicted, l / T) / d unit = -(W[:, y] - W p) / T; d unit / d scaled = std / 255.
  gradient = (-(weights.T[predicted] - probabilities @ weights.T) / temperature).reshape(
      scaled.shape) * std / 255.0
  sign = 2.0 * ((gradient >= 0).astype(np.float64) - 0.5) / std
  perturbed = to_unit(scaled - epsilon * sign)
  return -np_softmax(flat(perturbed) @ weights / temperature).max(-1)


def _odin_unit_numpy(unit_images, weights, temperature, epsilon):
  """tfanom's default step: epsilon on [0, 1] pixels, against the same gradient's sign."""
  flat = unit_images.reshape(len(unit_images), -1)
  logits = flat @ weights
  probabilities = np_softmax(logits / temperature)
  gradient = (weights.T[logits.argmax(-1)] - probabilities @ weights.T) / temperature
  perturbed = flat - epsilon * np.sign(-gradient)
  return -np_softmax(perturbed @ weights / temperature).max(-1)


def test_odin_steps_match_numpy_re_implementations_of_both_codes():
  rng = np.random.default_rng(3)
  unit_images = rng.random((8, 4, 4, 3))
  weights = rng.normal(size=(4 * 4 * 3, 5))
  # Per-channel statistics in 0-255 units, unequal so that a step scaled by them would show.
  mean, std = np.array([125.3, 123.0, 113.9]), np.array([63.0, 31.0, 90.0])
  # A large step and a low temperature, so that a step 255 times off moves the scores visibly.
  temperature, epsilon = 2.0, 3.0
  logits_fn = _linear_logits(tf.constant(weights))

  def tfanom_odin(step):
    return scores.odin(logits_fn, tf.constant(unit_images), temperature,
                       scores.odin_unit_step(epsilon, step)).numpy()

  official = _odin_official_numpy(unit_images, weights, temperature, epsilon, mean, std)
  unit = _odin_unit_numpy(unit_images, weights, temperature, epsilon)
  # ODIN scores in float32.
  np.testing.assert_allclose(tfanom_odin('official'), official, rtol=1e-5)
  np.testing.assert_allclose(tfanom_odin('unit'), unit, rtol=1e-5)
  # The official step is epsilon on 0-255 pixels: the unit step of epsilon / 255.
  np.testing.assert_allclose(
      official, _odin_unit_numpy(unit_images, weights, temperature, epsilon / 255.0), rtol=1e-10)
  assert np.abs(official - unit).min() > 1e-3


def test_an_unknown_odin_step_is_refused():
  with pytest.raises(UsageError, match='--odin_step=pixels is unknown: choose one of unit, '
                                       'official'):
    TrainConfig(odin_step='pixels')
