"""Ranking metrics for anomaly detection, in TensorFlow float64.

Anomalies are the positive class and a higher score means more anomalous. Labels may be bool, int or
float 0/1; labels and scores are flattened. Every metric reads one curve (`_curve`): the cumulative
true/false positive counts at each distinct score, so tied scores form a single threshold as in
scikit-learn. The functions return float64 scalar tensors, eagerly or inside `tf.function`.
TensorFlow flushes subnormal floats to zero, so such scores tie with 0.0 here (not in scikit-learn).
"""

import keras
import numpy as np
import tensorflow as tf

_NAN = float('nan')


def _flat(values):
  return tf.reshape(tf.cast(values, tf.float64), [-1])


def _curve(is_anomaly, scores):
  """Cumulative (tp, fp) counts from the infinite threshold, (0, 0), to the lowest score, (P, N)."""
  labels = _flat(is_anomaly)
  scores = _flat(scores)
  # top_k is what argsort runs anyway; taking its sorted values as well saves a gather.
  scores, order = tf.math.top_k(scores, k=tf.size(scores), sorted=True)
  tp = tf.cumsum(tf.gather(labels, order))
  # A threshold admits a whole group of tied scores at once, so only the counts after the last
  # member of each group are points of the curve; `scores[:1]` keeps empty inputs well-formed.
  group_end = tf.concat([tf.not_equal(scores[1:], scores[:-1]),
                         tf.ones_like(scores[:1], tf.bool)], 0)
  admitted = tf.reshape(tf.where(group_end), [-1])
  tp = tf.gather(tp, admitted)
  fp = tf.cast(admitted + 1, tf.float64) - tp
  origin = tf.zeros([1], tf.float64)
  return tf.concat([origin, tp], 0), tf.concat([origin, fp], 0)


def _ap(tp, fp):
  # Precision is never 0/0 here: every point after the origin has admitted at least one example.
  recall_steps = (tp[1:] - tp[:-1]) * tp[1:] / (tp[1:] + fp[1:])
  return tf.math.divide_no_nan(tf.reduce_sum(recall_steps), tp[-1])


def _auroc(tp, fp):
  # Trapezoids in counts are exact integers in float64 until the one division (NaN for one class).
  return tf.reduce_sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1])) / (2.0 * tp[-1] * fp[-1])


def _swap_classes(tp, fp):
  """The curve with normal examples as the positive class and negated scores."""
  # Read from the bottom of the ranking: what lies below a threshold is the total minus the rest.
  return tf.reverse(fp[-1] - fp, [0]), tf.reverse(tp[-1] - tp, [0])


def _fpr_at_tpr(tp, fp, tpr):
  # Dividing as roc_curve does makes the >= comparison agree with it exactly at the boundary.
  reached = tp / tp[-1] >= tpr
  first = tf.argmax(tf.cast(reached, tf.int32))
  # Without anomalies TPR is 0/0 and no threshold reaches it.
  return tf.where(reached[first], fp[first] / fp[-1], tf.constant(_NAN, tf.float64))


def average_precision(is_anomaly, scores):
  """Average precision, equal to `sklearn.metrics.average_precision_score(is_anomaly, scores)`.

  AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds. With no anomalies it is 0.0, as in
  scikit-learn 1.9.1 (which warns and sets recall to 1 everywhere); an empty input also gives 0.0.
  """
  return _ap(*_curve(is_anomaly, scores))


def auroc(is_anomaly, scores):
  """Area under the ROC curve, equal to `sklearn.metrics.roc_auc_score`; ties count one half.

  NaN when only one class is present (scikit-learn 1.9.1 also returns NaN, with a warning).
  """
  return _auroc(*_curve(is_anomaly, scores))


def aupr_in(is_anomaly, scores):
  """AP with normal examples as the positive class: `average_precision_score(1 - y, -s)`.

  0.0 when there are no normal examples.
  """
  return _ap(*_swap_classes(*_curve(is_anomaly, scores)))


def fpr_at_tpr(is_anomaly, scores, tpr=0.95):
  """False positive rate at the first threshold whose true positive rate reaches `tpr`.

  The fraction of normal examples flagged when lowering the threshold from the top until a
  fraction `tpr` of anomalies is caught: the first point of
  `sklearn.metrics.roc_curve(..., drop_intermediate=False)` with tpr >= `tpr`, i.e. the lowest FPR
  reaching that TPR. NaN when either class is absent. `tpr` is a Python float in [0, 1].
  """
  if not 0.0 <= tpr <= 1.0:
    raise ValueError(f'tpr must lie in [0, 1], got {tpr}')
  return _fpr_at_tpr(*_curve(is_anomaly, scores), tpr)


def skew(is_anomaly):
  """Fraction of anomalies: the expected AP of a detector that scores at random."""
  return tf.reduce_mean(tf.cast(is_anomaly, tf.float64))


def summarize(is_anomaly, scores):
  """AP, AUROC, AUPR-In and FPR at 95% TPR, as Python floats in percent, from a single sort."""
  tp, fp = _curve(is_anomaly, scores)
  metrics = {'ap': _ap(tp, fp), 'auroc': _auroc(tp, fp), 'aupr_in': _ap(*_swap_classes(tp, fp)),
             'fpr95': _fpr_at_tpr(tp, fp, 0.95)}
  return {name: 100.0 * float(value) for name, value in metrics.items()}


class AveragePrecision(keras.metrics.Metric):
  """Exact streaming average precision: keeps every label and score seen since the last reset.

  `update_state(is_anomaly, scores)` works eagerly and inside `tf.function`; `result()` is
  `average_precision` over everything accumulated (0.0 before any update).
  """

  def __init__(self, name='average_precision', dtype='float64', **kwargs):
    super().__init__(name=name, dtype=dtype, **kwargs)
    # Keras variables have a fixed shape; these grow by one batch per update.
    self._labels = tf.Variable(tf.zeros([0], tf.float64), shape=tf.TensorShape([None]),
                               trainable=False, name='labels')
    self._scores = tf.Variable(tf.zeros([0], tf.float64), shape=tf.TensorShape([None]),
                               trainable=False, name='scores')

  def update_state(self, is_anomaly, scores, sample_weight=None):
    if sample_weight is not None:
      raise ValueError('AveragePrecision does not support sample_weight')
    self._labels.assign(tf.concat([self._labels, _flat(is_anomaly)], 0))
    self._scores.assign(tf.concat([self._scores, _flat(scores)], 0))

  def result(self):
    return average_precision(self._labels, self._scores)

  def reset_state(self):
    self._labels.assign(tf.zeros([0], tf.float64))
    self._scores.assign(tf.zeros([0], tf.float64))


def classification_summary(labels: np.ndarray, predictions: np.ndarray) -> dict:
  """Accuracy on the known classes and skew, in percent, and the example counts.

  `num_misclassified`: known examples whose prediction is wrong; `skew_correct_only`: the fraction
  of anomalies once those are dropped, the random AP of the correct-only figures (`masking`).
  """
  is_anomaly = labels < 0
  known = ~is_anomaly
  misclassified = known & (predictions != labels)
  accuracy = float(np.mean(predictions[known] == labels[known]))
  return dict(accuracy=100.0 * accuracy, skew=100.0 * float(skew(is_anomaly)),
              skew_correct_only=100.0 * float(skew(is_anomaly[~misclassified])),
              num_examples=int(len(is_anomaly)), num_anomalies=int(is_anomaly.sum()),
              num_misclassified=int(misclassified.sum()))


# The figures of `masking`, per score. Their names say what is ranked against what.
MASKING_METRICS = ('ap_correct_only', 'auroc_correct_only', 'misclassification_auroc')


def _percent_or_none(value):
  """Percent as a Python float; None for NaN (a ranking with one class), which JSON lacks."""
  value = float(value)
  return None if np.isnan(value) else 100.0 * value


def masking(labels: np.ndarray, predictions: np.ndarray, scores: dict) -> dict:
  """How much of each score's ranking is misclassification rather than novelty, in percent.

  Per score (name -> per-example array, anomalies labelled < 0):
  - `ap_correct_only`, `auroc_correct_only`: AP and AUROC of the anomalies (positive) against the
    correctly classified known examples only; the misclassified known examples are dropped from
    the ranking. Without anomalies both are None.
  - `misclassification_auroc`: the known examples only, the misclassified ones positive: how well
    the score ranks the classifier's errors above its correct predictions (None when the
    classifier makes no error or no correct prediction).
  """
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  is_anomaly = labels < 0
  known = ~is_anomaly
  correct = known & (predictions == labels)
  ranked = is_anomaly | correct
  result = {}
  for name, values in scores.items():
    values = np.asarray(values)
    if is_anomaly.any():
      tp, fp = _curve(is_anomaly[ranked], values[ranked])
      ap, area = _percent_or_none(_ap(tp, fp)), _percent_or_none(_auroc(tp, fp))
    else:
      ap = area = None
    errors = _percent_or_none(auroc(~correct[known], values[known]))
    result[name] = dict(ap_correct_only=ap, auroc_correct_only=area,
                        misclassification_auroc=errors)
  return result


def score_metrics(labels: np.ndarray, predictions: np.ndarray, scores: dict) -> dict:
  """Every metric of every score (`summarize` and `masking`), per score: eval.json's `scores`.

  `tfanom.evaluate` writes it; a report recomputes it from a run's scores.npz. Empty without
  anomalies (--holdout=none): nothing to rank.
  """
  is_anomaly = np.asarray(labels) < 0
  if not is_anomaly.any():
    return {}
  masked = masking(labels, predictions, scores)
  return {name: {**summarize(is_anomaly, values), **masked[name]}
          for name, values in scores.items()}


def masking_by_metric(arrays: dict, names=('msp', 'odin')) -> dict:
  """`masking` of the scores `names` of `arrays` (with `label`, `prediction`), keyed metric first
  as results.json's `ap`: {'ap_correct_only': {'msp': ...}, ...}. Empty without anomalies."""
  if not (np.asarray(arrays['label']) < 0).any():
    return {}
  masked = masking(arrays['label'], arrays['prediction'], {name: arrays[name] for name in names})
  return {metric: {name: masked[name][metric] for name in names} for metric in MASKING_METRICS}
