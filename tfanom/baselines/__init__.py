r"""Appendix C's trivial baselines: anomaly scores from pixel statistics alone, without a network.

  python -m tfanom.baselines --dataset=cifar10 --data_dir=~/tensorflow_datasets \
      --method=gaussian_mixture                           # every hold-out class and their mean

- gaussian_mixture: per channel, a mixture of 3 one-dimensional Gaussians fit by EM to the
  training pixels of the known classes; an image's score is its negative log-likelihood, summed
  over pixels and channels. The paper finds it near-perfect against other datasets but at 11.17%
  AP on CIFAR-10's hold-out classes.
- edge_energy: the mean squared Sobel gradient magnitude of the grey image. The paper finds that
  *low* edge energy tells LSUN's flat scene crops from CIFAR-10 (87.5% AP); which way a held-out
  class leans is not known in advance, so both orientations are scored: `low_edge_energy`
  (score = -energy, the paper's) and `high_edge_energy` (score = energy).

Scores are oriented so that higher is more anomalous, and AP and skew are reported as in
results.json, in WORKDIR/baseline.json.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics
from tfanom.config import check_settings, setting
from tfanom.defaults import DATASET_DEFAULTS
from tfanom.data.holdout import resolve_holdout
from tfanom.data.sources import load_source
from tfanom.errors import UsageError
from tfanom.io import write_json_atomic
from tfanom.summaries import text_table
from tfanom.workdir import BASELINE_FILE, baseline_workdir

METHODS = ('gaussian_mixture', 'edge_energy')
GMM_COMPONENTS = 3
# A component may not become narrower than one quantisation step of 8-bit pixels (variance of a
# uniform over 1/255), or it collapses onto a single value such as MNIST's black background.
GMM_VARIANCE_FLOOR = (1.0 / 255.0) ** 2 / 12.0
GMM_MAX_ITERATIONS = 2000
GMM_TOLERANCE = 1e-10
PIXEL_VALUES = np.arange(256) / 255.0
CHUNK = 512


@dataclasses.dataclass(frozen=True)
class GaussianMixture1D:
  weights: np.ndarray  # [K]
  means: np.ndarray  # [K]
  variances: np.ndarray  # [K]

  def log_density(self, x):
    """log p(x) for an array of values."""
    x = np.asarray(x, np.float64)[..., None]
    log_components = (np.log(self.weights) - 0.5 * np.log(2 * np.pi * self.variances)
                      - 0.5 * np.square(x - self.means) / self.variances)
    return _logsumexp(log_components)

  def to_dict(self):
    return dict(weights=self.weights.tolist(), means=self.means.tolist(),
                variances=self.variances.tolist())


def _logsumexp(values):
  top = values.max(-1, keepdims=True)
  return (top + np.log(np.exp(values - top).sum(-1, keepdims=True)))[..., 0]


def fit_gaussian_mixture(values, counts, components=GMM_COMPONENTS) -> GaussianMixture1D:
  """EM for a 1-D Gaussian mixture on `values` observed `counts` times each.

  8-bit pixels take 256 values, so EM on their histogram is exact EM on every pixel and costs
  nothing. The start is deterministic (means at the histogram's quantiles, equal weights, the
  overall variance), so no seed is needed: the same pixels always give the same mixture.
  """
  values = np.asarray(values, np.float64)
  counts = np.asarray(counts, np.float64)
  total = counts.sum()
  if total <= 0:
    raise UsageError('the Gaussian-mixture baseline has no training pixels to fit')
  cumulative = np.cumsum(counts) / total
  quantiles = (np.arange(components) + 0.5) / components
  means = values[np.minimum(np.searchsorted(cumulative, quantiles), len(values) - 1)]
  overall_mean = np.sum(counts * values) / total
  variance = max(np.sum(counts * np.square(values - overall_mean)) / total, GMM_VARIANCE_FLOOR)
  mixture = GaussianMixture1D(np.full(components, 1.0 / components), means,
                              np.full(components, variance))
  previous = -np.inf
  for _ in range(GMM_MAX_ITERATIONS):
    x = values[:, None]
    log_joint = (np.log(mixture.weights) - 0.5 * np.log(2 * np.pi * mixture.variances)
                 - 0.5 * np.square(x - mixture.means) / mixture.variances)
    log_likelihood = _logsumexp(log_joint)
    responsibilities = np.exp(log_joint - log_likelihood[:, None]) * counts[:, None]
    mass = np.maximum(responsibilities.sum(0), 1e-300)
    means = (responsibilities * x).sum(0) / mass
    variances = np.maximum((responsibilities * np.square(x - means)).sum(0) / mass,
                           GMM_VARIANCE_FLOOR)
    mixture = GaussianMixture1D(mass / mass.sum(), means, variances)
    mean_log_likelihood = np.sum(counts * log_likelihood) / total
    if abs(mean_log_likelihood - previous) < GMM_TOLERANCE:
      break
    previous = mean_log_likelihood
  order = np.argsort(mixture.means)
  return GaussianMixture1D(mixture.weights[order], mixture.means[order], mixture.variances[order])


def pixel_histograms(images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Counts of each 8-bit value, per class and channel: [classes, channels, 256]."""
  channels = images.shape[-1]
  pixels_per_image = int(np.prod(images.shape[1:-1]))
  counts = np.zeros((num_classes, channels, 256), np.int64)
  for start in range(0, len(images), CHUNK):
    block = np.asarray(images[start:start + CHUNK]).reshape(-1, channels).astype(np.int64)
    # Each pixel's bin in a [class, value] table, so one bincount counts every class at once.
    bins = np.repeat(labels[start:start + CHUNK], pixels_per_image)[:, None] * 256 + block
    for channel in range(channels):
      counts[:, channel] += np.bincount(bins[:, channel],
                                        minlength=num_classes * 256).reshape(num_classes, 256)
  return counts


def mixture_scores(images: np.ndarray, mixtures) -> np.ndarray:
  """Negative log-likelihood of each image under one mixture per channel."""
  tables = np.stack([mixture.log_density(PIXEL_VALUES) for mixture in mixtures])  # [C, 256]
  scores = np.empty(len(images))
  for start in range(0, len(images), CHUNK):
    block = images[start:start + CHUNK]
    scores[start:start + CHUNK] = -sum(tables[c][block[..., c]].reshape(len(block), -1).sum(1)
                                       for c in range(block.shape[-1]))
  return scores


def edge_energy(images: np.ndarray) -> np.ndarray:
  """Mean squared Sobel gradient magnitude of each grey image, pixels in [0, 1]."""
  energies = []
  for start in range(0, len(images), CHUNK):
    block = tf.cast(np.asarray(images[start:start + CHUNK]), tf.float32) / 255.0
    grey = tf.image.rgb_to_grayscale(block) if block.shape[-1] == 3 else block
    gradients = tf.image.sobel_edges(grey)  # [B, H, W, 1, 2]
    energies.append(tf.reduce_mean(tf.reduce_sum(tf.square(gradients), -1), [1, 2, 3]).numpy())
  return np.concatenate(energies).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
  """What `python -m tfanom.baselines` scores; its flags are these fields."""
  dataset: str = setting('cifar10', 'Any dataset of tfanom.train.', choices=DATASET_DEFAULTS)
  holdout: str = setting('all', 'The anomaly class (index, name or WordNet id), or all: each class '
                         'in turn, and their mean.')
  method: str = setting('gaussian_mixture', f'One of {", ".join(METHODS)}.', choices=METHODS)
  data_dir: str | None = setting(None, 'As for tfanom.train.')
  image_size: int | None = setting(None, 'As for tfanom.train.', minimum=1)
  members: tuple[str, ...] = setting((), 'As for tfanom.train (--dataset=imagenet_subset).')
  cache_dir: str | None = setting(None, 'As for tfanom.train.')
  workdir: str | None = setting(None, 'Where baseline.json goes; default '
                                'runs/<dataset>/holdout<h>/baseline_<method>.')


def run_baseline(config: BaselineConfig, log=print) -> dict:
  """Scores the test split for one or every hold-out class; writes and returns baseline.json."""
  check_settings(config)
  image_size = config.image_size or DATASET_DEFAULTS.get(config.dataset, {}).get('image_size', 32)
  source = load_source(config.dataset, config.data_dir, image_size, config.members,
                       config.cache_dir)
  num_classes = len(source.class_names)
  if config.holdout == 'all':
    holdouts = list(range(num_classes))
  else:
    holdouts = [resolve_holdout(config.holdout, list(source.class_names), list(source.class_ids))]
  test_images, test_labels = np.asarray(source.test.images), source.test.labels
  if config.method == 'gaussian_mixture':
    histograms = pixel_histograms(source.train.images, source.train.labels, num_classes)
  else:
    energy = edge_energy(test_images)
  runs = []
  for index in holdouts:
    is_anomaly = test_labels == index
    run = dict(holdout=dict(index=index, name=source.class_names[index]))
    if config.method == 'gaussian_mixture':
      known = np.delete(histograms, index, axis=0).sum(0)  # [C, 256] without the held-out class
      mixtures = [fit_gaussian_mixture(PIXEL_VALUES, counts) for counts in known]
      scores = {'nll': mixture_scores(test_images, mixtures)}
      run['mixtures'] = [mixture.to_dict() for mixture in mixtures]
    else:
      scores = {'low_edge_energy': -energy, 'high_edge_energy': energy}
    run.update(skew=100.0 * float(metrics.skew(is_anomaly)),
               ap={name: 100.0 * float(metrics.average_precision(is_anomaly, values))
                   for name, values in scores.items()},
               num_examples=int(len(is_anomaly)), num_anomalies=int(is_anomaly.sum()))
    runs.append(run)
  baseline = dict(
      dataset=config.dataset, method=config.method, evaluated_on='test',
      flags=dict(dataclasses.asdict(config), members=list(config.members)),
      mean=dict(skew=float(np.mean([r['skew'] for r in runs])),
                ap={name: float(np.mean([r['ap'][name] for r in runs])) for name in runs[0]['ap']}),
      runs=runs)
  workdir = config.workdir or baseline_workdir(config.dataset, config.holdout, config.method)
  write_json_atomic(os.path.join(workdir, BASELINE_FILE), baseline)
  log(baseline_table(baseline))
  log(f'wrote {os.path.join(workdir, BASELINE_FILE)}')
  return baseline


def baseline_table(baseline: dict) -> str:
  scores = list(baseline['mean']['ap'])
  rows = [(f'{r["holdout"]["index"]} {r["holdout"]["name"]}', r) for r in baseline['runs']]
  if len(rows) > 1:
    rows.append(('mean', baseline['mean']))
  return text_table(
      f'{baseline["dataset"]}, {baseline["method"]} baseline, {baseline["evaluated_on"]} set',
      ['anomaly class', 'skew', *(f'AP {s}' for s in scores)],
      [[label, values['skew'], *(values['ap'][s] for s in scores)] for label, values in rows],
      [28, 8] + [20] * len(scores))
