"""Anomaly scores (`scores`: higher = more anomalous) and the metrics that rank them (`metrics`).

`REGISTRY` declares every score once: its name, what it needs from the model, the fitted training
statistics it uses and the arguments of its formula, the function of the same name in
`tfanom.anomaly.scores`. It is free of TensorFlow, so that tools which only read results
(`experiments.report`) can check a score's name without importing it; `tfanom.inference.scorer`
applies the formulas.
"""

import dataclasses

# What a score needs beyond the class logits of one forward pass.
FEATURES = 'features'  # the penultimate features and statistics fitted on the training features
INPUT_GRADIENTS = 'input_gradients'  # the gradient of the network with respect to its input
ROTATION_HEAD = 'rotation_head'  # a model trained with --aux=rotation

# Arguments fitted on the training split: the fields of
# `tfanom.inference.features.FeatureStatistics` and the class head's weights.
FITTED = ('class_means', 'precision', 'background_mean', 'background_precision', 'vim_origin',
          'vim_residual_basis', 'vim_alpha', 'react_threshold', 'bank', 'kernel', 'bias')


@dataclasses.dataclass(frozen=True)
class Score:
  """One score. Its formula is `tfanom.anomaly.scores.<name>`, called with `arguments`, each the
  name of what a batch provides: `images`, `logits`, `features`, a FITTED statistic, a setting
  (`odin_temperature`, `odin_epsilon`, `knn_k`, `num_rotations`) or another score's values.

  `model_function`: the formula needs the network itself (its input gradient, its rotation head),
  so the model's function of that name applies it to `arguments` instead:
  `tfanom.inference.scorer.Scorer` binds the formula to the live network, and a SavedModel keeps
  that function traced.
  """
  name: str
  arguments: tuple[str, ...]
  needs: tuple[str, ...] = ()
  model_function: str | None = None

  @property
  def fitted(self) -> tuple[str, ...]:
    """The fitted training statistics the formula uses."""
    return tuple(argument for argument in self.arguments if argument in FITTED)


REGISTRY = {score.name: score for score in (
    Score('msp', ('logits',)),
    Score('odin', ('images', 'odin_temperature', 'odin_epsilon'), (INPUT_GRADIENTS,),
          'odin_scores'),
    Score('energy', ('logits',)),
    Score('max_logit', ('logits',)),
    Score('gen', ('logits',)),
    Score('mahalanobis', ('features', 'class_means', 'precision'), (FEATURES,)),
    Score('rmds', ('features', 'class_means', 'precision', 'background_mean',
                   'background_precision'), (FEATURES,)),
    Score('knn', ('features', 'bank', 'knn_k'), (FEATURES,)),
    Score('vim', ('features', 'logits', 'vim_origin', 'vim_residual_basis', 'vim_alpha'),
          (FEATURES,)),
    Score('fdbd', ('features', 'logits', 'kernel', 'background_mean'), (FEATURES,)),
    Score('react_energy', ('features', 'kernel', 'bias', 'react_threshold'), (FEATURES,)),
    Score('rotation', ('images',), (ROTATION_HEAD,), 'rotation_scores'),
    Score('rotpred', ('logits', 'rotation', 'num_rotations'), (ROTATION_HEAD,)),
)}

SCORES = tuple(REGISTRY)
FEATURE_SCORES = tuple(name for name, score in REGISTRY.items() if FEATURES in score.needs)
ROTATION_SCORES = tuple(name for name, score in REGISTRY.items() if ROTATION_HEAD in score.needs)
# The scores in-training evaluation reports (results.json's `ap`).
TRAINING_SCORES = ('msp', 'odin')


def default_score(has_rotation: bool) -> str:
  """The score of `anomaly_score`/`is_anomaly` when tfanom.export is not told, fixed from the
  CIFAR-10 runs of docs/serving.md ("The default score"), never from the anomalies of the run being
  exported. There, a classification-only model's `energy` was its best score or within 1.2 AP of
  it; on rotation models `rotpred` had the highest mean AP and fell at most 4.0 AP short of the
  model's best (ViM: 0.7 to 10.3 points below the best of each model)."""
  return 'rotpred' if has_rotation else 'energy'


def available_scores(has_rotation: bool, has_statistics: bool = True) -> tuple[str, ...]:
  """The scores a model can give, in SCORES order."""
  return tuple(name for name, score in REGISTRY.items()
               if (has_rotation or ROTATION_HEAD not in score.needs)
               and (has_statistics or FEATURES not in score.needs))
