"""Training-feature statistics: running sums against one-shot NumPy fits, the bounded-memory
percentile, the fit's memory as the training set grows, and the cache."""

import dataclasses
import tracemalloc

import numpy as np
import pytest

from tfanom.inference.features import FeatureAccumulator, FeatureStatistics, percentile

RNG = np.random.default_rng(0)


def class_features(num_classes=4, size=500, dim=6, dead=1):
  labels = RNG.integers(0, num_classes, size)
  # A large common offset makes a raw second moment lose the covariance to cancellation.
  centres = 100.0 + RNG.normal(0.0, 3.0, (num_classes, dim))
  features = centres[labels] + RNG.normal(size=(size, dim)) * RNG.uniform(0.01, 2.0, dim)
  features[:, dim - dead:] = 0.0
  return features.astype(np.float32), labels


def head(dim=6, num_classes=4):
  return RNG.normal(size=(dim, num_classes)), RNG.normal(size=num_classes)


def relative_error(actual, expected):
  return np.abs(actual - expected).max() / np.abs(expected).max()


def test_running_sums_in_uneven_batches_equal_a_one_shot_fit():
  features, labels = class_features()
  kernel, bias = head()
  accumulator = FeatureAccumulator(4, len(features))
  bounds = [0, 1, 7, 64, 65, 300, len(features)]  # a batch of one, batches missing classes
  for begin, end in zip(bounds, bounds[1:]):
    accumulator.update(features[begin:end], labels[begin:end])
  statistics = accumulator.result(kernel, bias)
  features64 = features.astype(np.float64)
  means = np.stack([features64[labels == c].mean(0) for c in range(4)])
  centred = features64 - means[labels]
  tied = centred.T @ centred / len(features)
  background = np.cov(features64, rowvar=False, bias=True)
  assert relative_error(statistics.class_means, means) < 1e-12
  assert relative_error(np.linalg.pinv(statistics.precision, hermitian=True), tied) < 1e-8
  assert relative_error(statistics.background_mean, features64.mean(0)) < 1e-12
  assert relative_error(np.linalg.pinv(statistics.background_precision, hermitian=True),
                        background) < 1e-8
  unit = features64 / np.linalg.norm(features64, axis=1, keepdims=True)
  np.testing.assert_allclose(statistics.bank, unit, rtol=1e-6)
  one_shot = FeatureStatistics.fit(features, labels, 4, kernel, bias)
  for field in dataclasses.fields(FeatureStatistics):
    np.testing.assert_allclose(getattr(statistics, field.name), getattr(one_shot, field.name),
                               rtol=1e-7, atol=1e-9, err_msg=field.name)


@pytest.mark.parametrize('q', [0.0, 12.5, 50.0, 90.0, 99.9, 100.0])
def test_percentile_equals_numpy(q):
  values = RNG.normal(0.0, 3.0, (1000, 7)).astype(np.float32)
  values[:100] = 0.0  # ties, and zeros of both signs
  values[100:110] = -0.0
  values[200:300] = np.maximum(values[200:300], 0.0)
  assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-6,
                                                abs=1e-7)


def test_fitting_memory_does_not_grow_with_the_training_set_but_for_the_bank():
  kernel, bias = head(32, 5)

  def peak_without_bank(size):
    tracemalloc.start()
    accumulator = FeatureAccumulator(5, size)
    for begin in range(0, size, 512):
      labels = np.arange(begin, begin + 512) % 5
      accumulator.update(RNG.normal(size=(512, 32)).astype(np.float32), labels)
    statistics = accumulator.result(kernel, bias)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - statistics.bank.nbytes

  small, large = peak_without_bank(8192), peak_without_bank(81920)
  assert large < 1.1 * small, (small, large)


def test_every_class_needs_training_features():
  features, labels = class_features()
  with pytest.raises(ValueError, match=r'classes \[4\]'):
    FeatureStatistics.fit(features, labels, 5, *head(6, 5))


def test_cache_is_keyed_by_fingerprint(tmp_path):
  features, labels = class_features()
  statistics = FeatureStatistics.fit(features, labels, 4, *head())
  path = str(tmp_path / 'stats.npz')
  statistics.save(path, 'model-a')
  loaded = FeatureStatistics.load(path, 'model-a')
  for field in dataclasses.fields(FeatureStatistics):
    np.testing.assert_array_equal(getattr(loaded, field.name), getattr(statistics, field.name))
  assert FeatureStatistics.load(path, 'model-b') is None
  assert FeatureStatistics.load(str(tmp_path / 'missing.npz'), 'model-a') is None
  (tmp_path / 'corrupt.npz').write_bytes(b'not a zip file')
  assert FeatureStatistics.load(str(tmp_path / 'corrupt.npz'), 'model-a') is None
  # A cache from before a statistic was added is refit, not half-read.
  np.savez(tmp_path / 'old.npz', fingerprint=np.array('model-a'),
           class_means=statistics.class_means, precision=statistics.precision,
           bank=statistics.bank)
  assert FeatureStatistics.load(str(tmp_path / 'old.npz'), 'model-a') is None
