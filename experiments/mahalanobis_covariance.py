"""How the Mahalanobis score depends on its covariance estimate, for one trained run.

`compare_covariances(workdir)` takes the run's training and evaluation features (the same ones
`tfanom.evaluate` scores) and computes the Mahalanobis score's AP and AUROC with:
- `pinv`: tfanom's estimate, the pseudo-inverse of the tied (class-centred) covariance;
- `sklearn_empirical`: scikit-learn's `EmpiricalCovariance` on the class-centred features, as Lee
  et al.'s code does (an independent check of the first);
- `ledoit_wolf`: scikit-learn's `LedoitWolf` shrinkage towards a scaled identity;
- `cutoff_<t>`: the pseudo-inverse keeping only eigen-directions whose variance exceeds t times
  the largest, i.e. without the near-constant directions that a pseudo-inverse amplifies most.
It also reports the covariance's spectrum: how many directions have (near) zero variance.
"""

import numpy as np
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from tfanom.anomaly import metrics, scores
from tfanom.data.pipeline import to_unit_range
from tfanom.inference.restore import load_run
from tfanom.inference.scorer import ScoringModule
from tfanom.progress import batched

CUTOFFS = (1e-6, 1e-4, 1e-2)


def features_of(module, images, batch_size, what, log):
  features = batched(lambda batch: dict(features=module.features_and_logits(to_unit_range(batch))[0]),
                     images, batch_size, what, log)['features']
  return features.astype(np.float64)


def precisions(train, labels, num_classes):
  """Precision matrices of the tied covariance, by estimator; and the covariance's eigenvalues."""
  means = np.stack([train[labels == c].mean(0) for c in range(num_classes)])
  centred = train - means[labels]
  covariance = centred.T @ centred / len(train)
  values, vectors = np.linalg.eigh(covariance)
  estimates = dict(
      pinv=np.linalg.pinv(covariance, hermitian=True),
      sklearn_empirical=EmpiricalCovariance(assume_centered=True).fit(centred).precision_,
      ledoit_wolf=LedoitWolf(assume_centered=True).fit(centred).precision_)
  for cutoff in CUTOFFS:
    kept = values > cutoff * values.max()
    estimates[f'cutoff_{cutoff:g}'] = (vectors[:, kept] / values[kept]) @ vectors[:, kept].T
  return means, estimates, values


def compare_covariances(workdir: str, data_dir: str | None = None, log=print) -> dict:
  run = load_run(workdir, data_dir)
  module = ScoringModule(run, run.config.odin_temperature, run.config.odin_epsilon)
  split = run.split
  batch = run.config.eval_batch_size
  train = features_of(module, split.train.images, batch, 'training features', log)
  test = features_of(module, split.evaluation.images, batch, 'evaluation features', log)
  means, estimates, values = precisions(train, split.train.labels, split.num_classes)
  largest = values.max()
  spectrum = dict(dimensions=len(values), largest=float(largest),
                  **{f'below_{t:g}_of_largest': int((values <= t * largest).sum())
                     for t in (1e-12, *CUTOFFS)},
                  dead_units=int((train.std(0) == 0).sum()))
  results = {}
  for name, precision in estimates.items():
    values_ = scores.mahalanobis(test, means, precision).numpy()
    summary = metrics.summarize(split.is_anomaly, values_)
    results[name] = dict(ap=summary['ap'], auroc=summary['auroc'])
  return dict(workdir=workdir, checkpoint=run.checkpoint, spectrum=spectrum, scores=results)
