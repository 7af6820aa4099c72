import warnings

import numpy as np
import pytest
import keras
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from tfanom.anomaly import metrics

TOL = 1e-9


def random_case(n, seed, anomaly_fraction=0.3, decimals=None):
  rng = np.random.default_rng(seed)
  is_anomaly = rng.random(n) < anomaly_fraction
  is_anomaly[0] = True
  is_anomaly[1] = False
  # Anomalies score higher on average, so the metrics sit away from their trivial values.
  scores = rng.random(n) + 0.5 * is_anomaly
  if decimals is not None:
    scores = np.round(scores, decimals)
  return is_anomaly, scores


def fpr_at_tpr_reference(is_anomaly, scores, tpr):
  # Intermediate points must stay: dropping collinear ones can skip the first point reaching `tpr`.
  fpr, tprs, _ = roc_curve(is_anomaly, scores, drop_intermediate=False)
  return fpr[np.argmax(tprs >= tpr)]


def assert_matches_sklearn(is_anomaly, scores):
  y = np.asarray(is_anomaly).astype(int)
  s = np.asarray(scores)
  assert float(metrics.average_precision(is_anomaly, scores)) == pytest.approx(
      average_precision_score(y, s), abs=TOL)
  assert float(metrics.auroc(is_anomaly, scores)) == pytest.approx(roc_auc_score(y, s), abs=TOL)
  assert float(metrics.aupr_in(is_anomaly, scores)) == pytest.approx(
      average_precision_score(1 - y, -s), abs=TOL)
  assert float(metrics.fpr_at_tpr(is_anomaly, scores)) == pytest.approx(
      fpr_at_tpr_reference(y, s, 0.95), abs=TOL)


@pytest.mark.parametrize('n', [2, 10, 1000])
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_sklearn_on_random_scores(n, seed):
  assert_matches_sklearn(*random_case(n, seed))


@pytest.mark.parametrize('decimals', [0, 1])
def test_matches_sklearn_on_tied_scores(decimals):
  assert_matches_sklearn(*random_case(500, 2, decimals=decimals))


def test_matches_sklearn_when_all_scores_are_equal():
  is_anomaly, _ = random_case(100, 3)
  assert_matches_sklearn(is_anomaly, np.full(100, 0.7))
  # With one threshold, AP is the precision of flagging everything.
  assert float(metrics.average_precision(is_anomaly, np.zeros(100))) == pytest.approx(
      is_anomaly.mean(), abs=TOL)


def test_accepts_tensors_int_labels_and_column_scores():
  is_anomaly, scores = random_case(200, 4)
  scores = scores.astype(np.float32)
  result = metrics.average_precision(tf.constant(is_anomaly.astype(np.int32)),
                                     tf.constant(scores[:, None]))
  assert result.dtype == tf.float64
  assert float(result) == pytest.approx(average_precision_score(is_anomaly, scores), abs=TOL)


def test_works_inside_tf_function():
  is_anomaly, scores = random_case(300, 5, decimals=1)
  spec = tf.TensorSpec([None], tf.float64)
  compiled = tf.function(lambda y, s: (metrics.average_precision(y, s), metrics.auroc(y, s),
                                       metrics.aupr_in(y, s), metrics.fpr_at_tpr(y, s)),
                         input_signature=[spec, spec])
  results = compiled(is_anomaly.astype(np.float64), scores)
  eager = (metrics.average_precision(is_anomaly, scores), metrics.auroc(is_anomaly, scores),
           metrics.aupr_in(is_anomaly, scores), metrics.fpr_at_tpr(is_anomaly, scores))
  np.testing.assert_allclose([float(r) for r in results], [float(e) for e in eager], atol=TOL)


# Subnormals are left out: TensorFlow flushes them to zero, which ties them with 0.0.
small_scores = st.one_of(st.integers(-3, 3).map(float),
                         st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False))
labelled_scores = st.lists(st.tuples(st.booleans(), small_scores), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(labelled_scores)
def test_average_precision_matches_sklearn_on_generated_inputs(pairs):
  is_anomaly = np.array([label for label, _ in pairs] + [True])
  scores = np.array([score for _, score in pairs] + [pairs[0][1]])
  assert float(metrics.average_precision(is_anomaly, scores)) == pytest.approx(
      average_precision_score(is_anomaly, scores), abs=TOL)


@settings(max_examples=40, deadline=None)
@given(labelled_scores)
def test_all_metrics_match_sklearn_on_generated_inputs(pairs):
  # Both classes present, the only case where every sklearn reference is defined.
  is_anomaly = np.array([label for label, _ in pairs] + [True, False])
  scores = np.array([score for _, score in pairs] + [pairs[0][1], pairs[-1][1]])
  assert_matches_sklearn(is_anomaly, scores)


def test_no_anomalies_follows_sklearn():
  is_anomaly = np.zeros(5, bool)
  scores = np.arange(5.0)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    assert average_precision_score(is_anomaly, scores) == 0.0
    assert np.isnan(roc_auc_score(is_anomaly, scores))
  assert float(metrics.average_precision(is_anomaly, scores)) == 0.0
  assert np.isnan(float(metrics.auroc(is_anomaly, scores)))
  assert np.isnan(float(metrics.fpr_at_tpr(is_anomaly, scores)))
  assert float(metrics.aupr_in(is_anomaly, scores)) == 1.0


def test_no_normal_examples():
  is_anomaly = np.ones(4, bool)
  scores = np.arange(4.0)
  assert float(metrics.average_precision(is_anomaly, scores)) == 1.0
  assert float(metrics.aupr_in(is_anomaly, scores)) == 0.0
  assert np.isnan(float(metrics.auroc(is_anomaly, scores)))
  assert np.isnan(float(metrics.fpr_at_tpr(is_anomaly, scores)))


def test_fpr_at_tpr_takes_the_first_threshold_reaching_the_rate():
  # Ranking (high to low): A N A N A N; thresholds reach TPR 1/3, 2/3 and 1 with FPR 0, 1/3, 2/3.
  is_anomaly = [1, 0, 1, 0, 1, 0]
  scores = [6, 5, 4, 3, 2, 1]
  assert float(metrics.fpr_at_tpr(is_anomaly, scores, 0.5)) == pytest.approx(1 / 3)
  assert float(metrics.fpr_at_tpr(is_anomaly, scores, 2 / 3)) == pytest.approx(1 / 3)
  assert float(metrics.fpr_at_tpr(is_anomaly, scores, 0.95)) == pytest.approx(2 / 3)
  assert float(metrics.fpr_at_tpr(is_anomaly, scores, 0.0)) == 0.0


@pytest.mark.parametrize('tpr', [0.5, 0.8, 0.95, 0.99, 1.0])
def test_fpr_at_tpr_matches_roc_curve(tpr):
  is_anomaly, scores = random_case(400, 6, decimals=1)
  assert float(metrics.fpr_at_tpr(is_anomaly, scores, tpr)) == pytest.approx(
      fpr_at_tpr_reference(is_anomaly, scores, tpr), abs=TOL)


def test_fpr_at_tpr_rejects_rates_outside_unit_interval():
  with pytest.raises(ValueError, match='tpr'):
    metrics.fpr_at_tpr([1, 0], [1.0, 0.0], 95)


def test_skew_is_the_anomaly_fraction_and_the_ap_of_a_constant_detector():
  is_anomaly = np.array([1, 0, 0, 0, 1, 0, 0, 0], bool)
  assert float(metrics.skew(is_anomaly)) == 0.25
  assert float(metrics.average_precision(is_anomaly, np.ones(8))) == 0.25


def test_summarize_reports_percent():
  is_anomaly, scores = random_case(300, 7)
  summary = metrics.summarize(is_anomaly, scores)
  assert set(summary) == {'ap', 'auroc', 'aupr_in', 'fpr95'}
  assert all(isinstance(value, float) for value in summary.values())
  assert summary['ap'] == pytest.approx(100 * average_precision_score(is_anomaly, scores), abs=1e-7)
  assert summary['auroc'] == pytest.approx(100 * roc_auc_score(is_anomaly, scores), abs=1e-7)
  assert summary['aupr_in'] == pytest.approx(
      100 * average_precision_score(~is_anomaly, -scores), abs=1e-7)
  assert summary['fpr95'] == pytest.approx(
      100 * fpr_at_tpr_reference(is_anomaly, scores, 0.95), abs=1e-7)


def test_million_scores_match_sklearn():
  rng = np.random.default_rng(8)
  is_anomaly = rng.random(10**6) < 0.1
  # float32 scores collide often at this size, so ties are exercised too.
  scores = (rng.random(10**6) + 0.3 * is_anomaly).astype(np.float32)
  assert float(metrics.average_precision(is_anomaly, scores)) == pytest.approx(
      average_precision_score(is_anomaly, scores), abs=TOL)


def batches(is_anomaly, scores, sizes):
  bounds = np.cumsum([0] + sizes)
  return [(is_anomaly[a:b], scores[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def test_streaming_average_precision_equals_one_shot():
  is_anomaly, scores = random_case(500, 9, decimals=1)
  metric = metrics.AveragePrecision()
  for batch in batches(is_anomaly, scores, [1, 99, 250, 150]):
    metric.update_state(*batch)
  assert float(metric.result()) == pytest.approx(
      average_precision_score(is_anomaly, scores), abs=TOL)


def test_streaming_update_inside_tf_function():
  is_anomaly, scores = random_case(500, 10)
  metric = metrics.AveragePrecision()
  update = tf.function(metric.update_state)
  for batch in batches(is_anomaly, scores, [100, 100, 300]):
    update(*batch)
  result = tf.function(metric.result)()
  assert float(result) == pytest.approx(average_precision_score(is_anomaly, scores), abs=TOL)


def test_streaming_reset_state():
  is_anomaly, scores = random_case(300, 11)
  metric = metrics.AveragePrecision()
  assert float(metric.result()) == 0.0
  metric.update_state(~is_anomaly, scores)
  metric.reset_state()
  assert float(metric.result()) == 0.0
  metric.update_state(is_anomaly, scores)
  assert float(metric.result()) == pytest.approx(
      average_precision_score(is_anomaly, scores), abs=TOL)


def test_streaming_rejects_sample_weight():
  with pytest.raises(ValueError, match='sample_weight'):
    metrics.AveragePrecision().update_state([1, 0], [0.9, 0.1], sample_weight=[1.0, 2.0])


def test_streaming_as_a_compiled_keras_metric():
  rng = np.random.default_rng(12)
  features = rng.normal(size=(300, 3)).astype(np.float32)
  is_anomaly = (features[:, 0] + rng.normal(size=300) > 1).astype(np.float32)
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
  model.compile(loss='mse', metrics=[metrics.AveragePrecision()])
  logs = model.evaluate(features, is_anomaly, batch_size=64, verbose=0, return_dict=True)
  scores = model.predict(features, batch_size=64, verbose=0)[:, 0]
  assert logs['average_precision'] == pytest.approx(
      average_precision_score(is_anomaly, scores), abs=TOL)


def classified_case(seed, n=600, classes=3):
  """Known examples of `classes` classes, a fifth wrong, and anomalies (label -1), with scores
  that rise on anomalies and, less, on errors: the masking the correct-only figures remove."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n)
  labels[rng.random(n) < 0.25] = -1
  predictions = np.where(rng.random(n) < 0.2, (labels + 1) % classes, labels)
  predictions[labels < 0] = rng.integers(0, classes, (labels < 0).sum())
  wrong = (labels >= 0) & (predictions != labels)
  scores = dict(a=np.round(rng.random(n) + 0.6 * (labels < 0) + 0.8 * wrong, 1),
                b=rng.random(n) + 0.3 * wrong)
  return labels, predictions, scores


@pytest.mark.parametrize('seed', [0, 1])
def test_masking_matches_sklearn_on_the_correct_only_and_known_only_rankings(seed):
  labels, predictions, scores = classified_case(seed)
  anomaly = labels < 0
  correct = (labels >= 0) & (predictions == labels)
  ranked = anomaly | correct
  known = labels >= 0
  masked = metrics.masking(labels, predictions, scores)
  for name, values in scores.items():
    assert masked[name]['ap_correct_only'] == pytest.approx(
        100 * average_precision_score(anomaly[ranked], values[ranked]), abs=1e-7)
    assert masked[name]['auroc_correct_only'] == pytest.approx(
        100 * roc_auc_score(anomaly[ranked], values[ranked]), abs=1e-7)
    # The misclassified known examples are the positive class.
    assert masked[name]['misclassification_auroc'] == pytest.approx(
        100 * roc_auc_score(~correct[known], values[known]), abs=1e-7)
  # Dropping the errors, which score high, raises the anomalies' AP.
  full = metrics.summarize(anomaly, scores['a'])
  assert masked['a']['ap_correct_only'] > full['ap'] + 5


def test_score_metrics_holds_every_figure_and_the_summary_counts_the_errors():
  labels, predictions, scores = classified_case(2)
  table = metrics.score_metrics(labels, predictions, scores)
  for name, values in scores.items():
    assert table[name] == {**metrics.summarize(labels < 0, values),
                           **metrics.masking(labels, predictions, scores)[name]}
  summary = metrics.classification_summary(labels, predictions)
  wrong = (labels >= 0) & (predictions != labels)
  assert summary['num_misclassified'] == wrong.sum() > 0
  assert summary['skew_correct_only'] == pytest.approx(
      100 * (labels < 0).sum() / ((labels < 0).sum() + (labels >= 0).sum() - wrong.sum()))
  by_metric = metrics.masking_by_metric(dict(label=labels, prediction=predictions, **scores),
                                        ('a', 'b'))
  assert by_metric == {metric: {name: table[name][metric] for name in ('a', 'b')}
                       for metric in metrics.MASKING_METRICS}


def test_masking_without_errors_or_anomalies_gives_none_not_nan():
  labels = np.array([0, 1, 0, 1, -1, -1])
  scores = dict(s=np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8]))
  masked = metrics.masking(labels, labels.clip(0), scores)['s']
  assert masked['misclassification_auroc'] is None
  assert masked['ap_correct_only'] == masked['auroc_correct_only'] == 100.0
  known_only, known_scores = labels[:4], dict(s=scores['s'][:4])
  assert metrics.masking(known_only, known_only, known_scores)['s'] == dict(
      ap_correct_only=None, auroc_correct_only=None, misclassification_auroc=None)
  assert metrics.score_metrics(known_only, known_only, known_scores) == {}
  assert metrics.masking_by_metric(dict(label=known_only, prediction=known_only, **known_scores),
                                   ('s',)) == {}
