"""Training-set statistics of penultimate features, for the Mahalanobis and KNN scores.

They are fit once per model from the whole training split (unaugmented, inference mode) and cached
in the workdir, keyed by a fingerprint of the model's weights so a new checkpoint refits them.
"""

import dataclasses
import hashlib
import zipfile

import numpy as np

from tfanom.io import write_npz_atomic


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
  class_means: np.ndarray  # [C, D] float64
  precision: np.ndarray  # [D, D] float64, the pseudo-inverse of the tied covariance
  bank: np.ndarray  # [N, D] float32, the L2-normalised training features

  @classmethod
  def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int) -> 'FeatureStatistics':
    """Class means and their shared covariance (Lee et al. 2018), and the KNN bank."""
    features64 = features.astype(np.float64)
    missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
    if missing:
      raise ValueError(f'no training features of classes {missing}')
    class_means = np.stack([features64[labels == c].mean(0) for c in range(num_classes)])
    centred = features64 - class_means[labels]
    covariance = centred.T @ centred / len(features64)
    # ReLU features can be constant (dead units), so the covariance may be singular; the
    # pseudo-inverse ignores those directions, as scikit-learn's EmpiricalCovariance does.
    precision = np.linalg.pinv(covariance, hermitian=True)
    norms = np.linalg.norm(features64, axis=1, keepdims=True)
    bank = (features64 / np.maximum(norms, 1e-12)).astype(np.float32)
    return cls(class_means, precision, bank)

  def save(self, path: str, fingerprint: str) -> None:
    write_npz_atomic(path, dict(fingerprint=np.array(fingerprint), **dataclasses.asdict(self)))

  @classmethod
  def load(cls, path: str, fingerprint: str) -> 'FeatureStatistics | None':
    """The cached statistics, or None when absent, unreadable or fit for another model."""
    try:
      with np.load(path) as archive:
        if str(archive['fingerprint']) != fingerprint:
          return None
        return cls(**{field.name: archive[field.name] for field in dataclasses.fields(cls)})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
      return None


def file_fingerprint(paths) -> str:
  """SHA-256 of the given files' contents: checkpoint index files hold every tensor's checksum."""
  digest = hashlib.sha256()
  for path in paths:
    with open(path, 'rb') as handle:
      for block in iter(lambda: handle.read(1 << 20), b''):
        digest.update(block)
  return digest.hexdigest()
