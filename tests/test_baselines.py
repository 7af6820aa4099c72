"""Appendix C's trivial baselines: the pixel-level Gaussian mixture and edge energy."""

import json

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from tfanom import baselines
from tfanom.baselines import BaselineConfig, run_baseline

from tests.helpers import run_command_line


def quantised_mixture_sample(weights, means, stds, size, seed=0):
  rng = np.random.default_rng(seed)
  component = rng.choice(len(weights), size=size, p=weights)
  values = rng.normal(np.asarray(means)[component], np.asarray(stds)[component])
  return np.clip(np.round(values * 255), 0, 255).astype(np.uint8)


def test_gaussian_mixture_recovers_known_parameters():
  weights, means, stds = [0.2, 0.5, 0.3], [0.15, 0.5, 0.8], [0.04, 0.08, 0.05]
  # 100,000 pixels: the parameters within a fifth of the tolerances below over seeds 0-2 (at most
  # 0.0013 off), and scikit-learn's fit in 1.0 s of CPU against 2.6 s on 400,000.
  pixels = quantised_mixture_sample(weights, means, stds, 100_000)
  mixture = baselines.fit_gaussian_mixture(baselines.PIXEL_VALUES,
                                           np.bincount(pixels, minlength=256))
  np.testing.assert_allclose(mixture.weights, weights, atol=0.01)
  np.testing.assert_allclose(mixture.means, means, atol=0.005)
  np.testing.assert_allclose(np.sqrt(mixture.variances), stds, atol=0.005)
  # The same optimum as scikit-learn's EM on every pixel.
  reference = GaussianMixture(3, random_state=0, tol=1e-8).fit(pixels[:, None] / 255.0)
  order = np.argsort(reference.means_[:, 0])
  np.testing.assert_allclose(mixture.means, reference.means_[order, 0], atol=1e-3)
  np.testing.assert_allclose(mixture.weights, reference.weights_[order], atol=1e-3)


def test_gaussian_mixture_does_not_collapse_on_a_constant_background():
  pixels = np.concatenate([np.zeros(50_000, np.uint8),
                           quantised_mixture_sample([1.0], [0.6], [0.1], 20_000)])
  mixture = baselines.fit_gaussian_mixture(baselines.PIXEL_VALUES,
                                           np.bincount(pixels, minlength=256))
  assert np.all(mixture.variances >= baselines.GMM_VARIANCE_FLOOR)
  assert np.all(np.isfinite(mixture.log_density(baselines.PIXEL_VALUES)))
  # EM may share the zeros between components; together they hold the zeros' weight.
  assert mixture.weights[mixture.means < 0.01].sum() == pytest.approx(50 / 70, abs=0.01)


def test_pixel_histograms_count_every_pixel_of_every_class():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (1100, 5, 6, 3), dtype=np.uint8)
  labels = rng.integers(0, 4, 1100)
  counts = baselines.pixel_histograms(images, labels, 4)
  for label in range(4):
    for channel in range(3):
      np.testing.assert_array_equal(
          counts[label, channel],
          np.bincount(images[labels == label][..., channel].ravel(), minlength=256))


def test_mixture_score_is_the_image_negative_log_likelihood():
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (700, 4, 4, 3), dtype=np.uint8)
  mixtures = [baselines.GaussianMixture1D(np.array([0.3, 0.7]), np.array([0.2 + c / 10, 0.7]),
                                          np.array([0.01, 0.05])) for c in range(3)]
  direct = -sum(mixtures[c].log_density(images[..., c] / 255.0).sum((1, 2)) for c in range(3))
  np.testing.assert_allclose(baselines.mixture_scores(images, mixtures), direct, rtol=1e-12)


def test_edge_energy():
  flat = np.full((2, 16, 16, 3), 90, np.uint8)
  edges = flat.copy()
  edges[:, :, 8:] = 250
  half_contrast = flat.copy()
  half_contrast[:, :, 8:] = 170
  energy = baselines.edge_energy(np.concatenate([flat, edges, half_contrast]))
  assert energy[0] == 0 and energy[2] > 0
  assert energy[4] == pytest.approx(energy[2] / 4, rel=1e-4)  # quadratic in the contrast
  grey = baselines.edge_energy(edges[..., :1])
  assert grey[0] == pytest.approx(energy[2], rel=1e-3)  # grey conversion rounds


def test_digits_baselines_write_baseline_json(tmp_path):
  every = run_baseline(BaselineConfig(dataset='digits', workdir=str(tmp_path / 'all')),
                       log=lambda line: None)
  assert [run['holdout']['index'] for run in every['runs']] == list(range(10))
  saved = json.loads((tmp_path / 'all' / 'baseline.json').read_text())
  assert saved == every
  assert every['mean']['ap']['nll'] == pytest.approx(np.mean([r['ap']['nll'] for r in every['runs']]))
  for run in every['runs']:
    assert run['skew'] == pytest.approx(100 * run['num_anomalies'] / run['num_examples'])
    assert len(run['mixtures']) == 1 and len(run['mixtures'][0]['weights']) == 3
  one = run_baseline(BaselineConfig(dataset='digits', holdout='7', workdir=str(tmp_path / 'one')),
                     log=lambda line: None)
  assert one['runs'] == [every['runs'][7]]
  edges = run_baseline(BaselineConfig(dataset='digits', holdout='0', method='edge_energy',
                                      workdir=str(tmp_path / 'edges')), log=lambda line: None)
  ap = edges['runs'][0]['ap']
  assert set(ap) == {'low_edge_energy', 'high_edge_energy'}
  # Zeros, long closed strokes, have the most edges: the high-energy orientation finds them.
  assert ap['high_edge_energy'] > 2 * edges['runs'][0]['skew'] > ap['low_edge_energy']


def test_cli_rejects_an_unknown_method_in_one_line(tmp_path):
  # In this process: the command's flag parsing and one-line error, without a Python start-up
  # and TensorFlow import of its own (7 s of CPU as a subprocess).
  process = run_command_line('tfanom.baselines.__main__', '--dataset=digits',
                             '--method=histogram', f'--workdir={tmp_path}')
  assert process.returncode == 2
  assert process.stderr.splitlines() == [
      'tfanom.baselines: error: --method=histogram is unknown: choose one of gaussian_mixture, '
      'edge_energy']
  assert not list(tmp_path.iterdir())
