"""Training-set statistics of penultimate features, for the scores that compare a feature with them.

They are fit once per model from the whole training split (unaugmented, inference mode) and cached
in the workdir, keyed by a fingerprint of the model's weights so a new checkpoint refits them.

`FeatureAccumulator` takes the training features batch by batch. Class means, the tied and the
background covariances come from running means and scatter matrices in float64 (merged per batch
as Chan, Golub & LeVeque's pairwise update), so their memory does not grow with the training set.
The one statistic that holds every training feature is the KNN bank (float32, [N, D]); ViM's scale
and ReAct's clipping percentile are read from it in fixed-size chunks before it is normalised.
"""

import dataclasses
import hashlib
import zipfile

import numpy as np

from tfanom.io import write_npz_atomic

REACT_PERCENTILE = 90.0  # ReAct's default: clip at the 90th percentile of training activations
CHUNK_ROWS = 4096  # rows of the bank read at once when deriving statistics from it


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
  class_means: np.ndarray  # [C, D] float64
  precision: np.ndarray  # [D, D] float64, the pseudo-inverse of the tied covariance
  background_mean: np.ndarray  # [D] float64, the mean of all training features
  background_precision: np.ndarray  # [D, D] float64, the pseudo-inverse of their covariance
  vim_origin: np.ndarray  # [D] float64, -pinv(W^T) b of the class head
  vim_residual_basis: np.ndarray  # [D, D - k] float64, outside the top-k principal subspace
  vim_alpha: np.ndarray  # [] float64
  react_threshold: np.ndarray  # [] float64, the REACT_PERCENTILE-th percentile of the features
  bank: np.ndarray  # [N, D] float32, the L2-normalised training features

  @classmethod
  def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int, kernel: np.ndarray,
          bias: np.ndarray) -> 'FeatureStatistics':
    """The statistics of `features` in one batch; `kernel` [D, C], `bias` [C]: the class head."""
    accumulator = FeatureAccumulator(num_classes, len(features))
    accumulator.update(features, labels)
    return accumulator.result(kernel, bias)

  def save(self, path: str, fingerprint: str) -> None:
    write_npz_atomic(path, dict(fingerprint=np.array(fingerprint), **dataclasses.asdict(self)))

  @classmethod
  def load(cls, path: str, fingerprint: str) -> 'FeatureStatistics | None':
    """The cached statistics, or None when absent, unreadable, of an older layout or of another
    model."""
    try:
      with np.load(path) as archive:
        if str(archive['fingerprint']) != fingerprint:
          return None
        return cls(**{field.name: archive[field.name] for field in dataclasses.fields(cls)})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
      return None


class FeatureAccumulator:
  """Running statistics of training features, `update`d batch by batch, then `result`.

  `capacity` is the number of training features to come: the bank is allocated once at that size.
  """

  def __init__(self, num_classes: int, capacity: int):
    self.num_classes = num_classes
    self.capacity = capacity
    self.filled = 0
    self.class_counts = np.zeros(num_classes, np.int64)
    self._bank = None

  def update(self, features: np.ndarray, labels: np.ndarray) -> None:
    features = np.asarray(features)
    labels = np.asarray(labels)
    if self._bank is None:
      dim = features.shape[1]
      self._bank = np.empty((self.capacity, dim), np.float32)
      self.class_means = np.zeros((self.num_classes, dim))
      self.tied_scatter = np.zeros((dim, dim))
      self.mean = np.zeros(dim)
      self.scatter = np.zeros((dim, dim))
    if self.filled + len(features) > self.capacity:
      raise ValueError(f'more than the {self.capacity} features announced')
    self._bank[self.filled:self.filled + len(features)] = features
    features = features.astype(np.float64)
    for label in np.unique(labels):
      members = features[labels == label]
      self.class_means[label], self.class_counts[label] = _merge(
          self.class_means[label], self.class_counts[label], self.tied_scatter, members)
    self.mean, self.filled = _merge(self.mean, self.filled, self.scatter, features)

  def result(self, kernel: np.ndarray, bias: np.ndarray) -> FeatureStatistics:
    """The statistics, for the class head `kernel` [D, C] and `bias` [C]; consumes the bank."""
    missing = np.flatnonzero(self.class_counts == 0).tolist()
    if missing:
      raise ValueError(f'no training features of classes {missing}')
    if self.filled != self.capacity:
      raise ValueError(f'{self.filled} features of the {self.capacity} announced')
    kernel = np.asarray(kernel, np.float64)
    bias = np.asarray(bias, np.float64)
    bank = self._bank
    # ReLU features can be constant (dead units), so covariances may be singular; the
    # pseudo-inverse ignores those directions, as scikit-learn's EmpiricalCovariance does.
    precision = np.linalg.pinv(self.tied_scatter / self.filled, hermitian=True)
    covariance = self.scatter / self.filled
    background_precision = np.linalg.pinv(covariance, hermitian=True)
    origin, residual_basis = _vim_subspace(covariance, self.mean, kernel, bias)
    max_logit_sum = residual_sum = 0.0
    for chunk in _chunks(bank):
      chunk = chunk.astype(np.float64)
      max_logit_sum += (chunk @ kernel + bias).max(axis=1).sum()
      residual_sum += np.linalg.norm((chunk - origin) @ residual_basis, axis=1).sum()
    alpha = max_logit_sum / residual_sum if residual_sum > 0 else 0.0
    react_threshold = percentile(bank, REACT_PERCENTILE)
    for chunk in _chunks(bank):
      chunk /= np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)
    self._bank = None
    return FeatureStatistics(self.class_means, precision, self.mean, background_precision,
                             origin, residual_basis, np.array(alpha), np.array(react_threshold),
                             bank)


def _merge(mean, count, scatter, batch):
  """Merges `batch` [n, D] into a running (mean, count) and adds to `scatter` in place.

  scatter = sum (x - mean)(x - mean)^T; merging shifts it by the difference of the two means, so
  no raw second moment (and its cancellation) is ever formed.
  """
  size = len(batch)
  batch_mean = batch.mean(axis=0)
  centred = batch - batch_mean
  total = count + size
  delta = batch_mean - mean
  scatter += centred.T @ centred + np.outer(delta, delta) * (count * size / total)
  return mean + delta * (size / total), total


def _vim_subspace(covariance, mean, kernel, bias):
  """ViM's origin o = -pinv(W^T) b and the basis of the residual space about it.

  The principal subspace is the top half of the eigenvectors of the features' second moment about
  o (covariance + (mean - o)(mean - o)^T). ViM's paper uses k = 1000 or 512 for features of 2048
  or 768 dimensions; for the small feature sizes of CIFAR networks we take k = D / 2, the share
  OpenOOD uses for ResNet-18's 512 features (k = 256).
  """
  origin = -np.linalg.pinv(kernel.T) @ bias
  shift = mean - origin
  _, vectors = np.linalg.eigh(covariance + np.outer(shift, shift))  # ascending eigenvalues
  principal = len(mean) // 2
  return origin, np.ascontiguousarray(vectors[:, :len(mean) - principal])


def _chunks(array):
  for begin in range(0, len(array), CHUNK_ROWS):
    yield array[begin:begin + CHUNK_ROWS]


def _sortable(values: np.ndarray) -> np.ndarray:
  """float32 values as uint32 keys with the same order (sign-magnitude to offset binary)."""
  bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
  return np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))


def _unsortable(key: int) -> float:
  bits = key ^ 0x80000000 if key >> 31 else ~key & 0xFFFFFFFF
  return float(np.array([bits], np.uint32).view(np.float32)[0])


def _count_at_or_below(array, key: int) -> int:
  return sum(int(np.count_nonzero(_sortable(chunk) <= key)) for chunk in _chunks(array))


def _order_statistic(array, rank: int) -> int:
  """The key of the rank-th smallest (from 0) of the float32 `array`'s values, by bisection.

  Each step counts the values at or below a key in fixed-size chunks: exact, without the copy that
  sorting or partitioning the array would need.
  """
  low, high = 0, 0xFFFFFFFF
  while low < high:
    middle = (low + high) // 2
    if _count_at_or_below(array, middle) > rank:
      high = middle
    else:
      low = middle + 1
  return low


def percentile(array: np.ndarray, q: float) -> float:
  """`np.percentile(array, q)` (linear interpolation) of a float32 array, in bounded memory."""
  position = q / 100.0 * (array.size - 1)
  below = int(np.floor(position))
  key = _order_statistic(array, below)
  value = _unsortable(key)
  if position == below or _count_at_or_below(array, key) > below + 1:
    return value  # the next value up is the same
  # The next value up is the smallest one above this key.
  above_key = 0xFFFFFFFF
  for chunk in _chunks(array):
    keys = _sortable(chunk)
    larger = keys[keys > key]
    if larger.size:
      above_key = min(above_key, int(larger.min()))
  above = _unsortable(above_key)
  return value + (position - below) * (above - value)


def file_fingerprint(paths) -> str:
  """SHA-256 of the given files' contents: checkpoint index files hold every tensor's checksum."""
  digest = hashlib.sha256()
  for path in paths:
    with open(path, 'rb') as handle:
      for block in iter(lambda: handle.read(1 << 20), b''):
        digest.update(block)
  return digest.hexdigest()
