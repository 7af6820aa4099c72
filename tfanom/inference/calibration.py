"""Thresholds that turn a score into a decision, calibrated on normal images only.

A threshold at normal rate r is the score below which a share r of new normal images falls: an
image is called an anomaly when its score is above it. No anomaly is ever used, so the rate is
the one thing a user chooses (the false-alarm share 1 - r), and the recall of anomalies follows.

The threshold is the k-th smallest of the n calibration scores with k = ceil(r (n + 1)), the
split-conformal quantile: for a new image drawn like the calibration images, P(score <= threshold)
>= r exactly, whatever the score's distribution (Vovk, Gammerman & Shafer, "Algorithmic Learning in
a Random World", 2005; Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction", 2021).
When r (n + 1) > n the largest score is used, and the rate met on the calibration set is recorded
beside the one asked for.
"""

import dataclasses
import math

import numpy as np

from tfanom.errors import UsageError

NORMAL_RATES = (0.90, 0.95, 0.99)
DEFAULT_NORMAL_RATE = 0.95


@dataclasses.dataclass(frozen=True)
class Calibration:
  """Thresholds per score and rate, and what they were calibrated on."""
  source: str  # where the calibration images came from
  size: int  # how many calibration images
  rates: tuple[float, ...]  # the normal rates asked for
  thresholds: dict  # score name -> [threshold per rate]
  rates_met: dict  # score name -> [share of calibration scores <= threshold, per rate]

  def threshold(self, score: str, rate: float) -> float:
    return self.thresholds[score][self.rates.index(rate)]

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Detector:
  """What an export needs beyond the model: feature statistics, thresholds, the chosen score."""
  statistics: object  # tfanom.inference.features.FeatureStatistics
  knn_k: int
  calibration: Calibration
  score: str
  normal_rate: float

  def threshold(self, score: str) -> float:
    return self.calibration.threshold(score, self.normal_rate)


def conformal_threshold(values: np.ndarray, rate: float) -> float:
  """The ceil(rate (n + 1))-th smallest of `values` (the largest when that rank exceeds n)."""
  values = np.asarray(values)
  if values.size == 0:
    raise ValueError('no calibration scores')
  rank = min(math.ceil(rate * (values.size + 1)), values.size)
  return float(np.partition(values, rank - 1)[rank - 1])


def calibrate(scores: dict, rates, source: str) -> Calibration:
  """Thresholds of every score in `scores` (name -> calibration scores of normal images)."""
  rates = tuple(float(rate) for rate in rates)
  thresholds, met = {}, {}
  for name, values in scores.items():
    # float32, as the SavedModel serves scores: its comparison then matches this one exactly.
    values = np.asarray(values, np.float32)
    thresholds[name] = [conformal_threshold(values, rate) for rate in rates]
    met[name] = [float(np.mean(values <= np.float32(t))) for t in thresholds[name]]
  size = len(next(iter(scores.values())))
  return Calibration(source, size, rates, thresholds, met)


def check_normal_rate(rate: float) -> None:
  if not 0.0 < rate < 1.0:
    raise UsageError(f'--normal_rate={rate} must lie strictly between 0 and 1: it is the share of '
                     'normal images accepted, e.g. 0.95')


def rates_with(rate: float) -> tuple[float, ...]:
  """NORMAL_RATES, with `rate` added in order when it is not one of them."""
  return tuple(sorted(set(NORMAL_RATES) | {float(rate)}))
