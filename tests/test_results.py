"""results.json: the final-window average of the correct-only figures."""

import pytest

from tfanom.anomaly.metrics import MASKING_METRICS
from tfanom.training.results import final_metrics


def evaluation(epoch, errors=None):
  masked = {metric: dict(msp=float(epoch), odin=2.0 * epoch) for metric in MASKING_METRICS}
  masked['misclassification_auroc']['odin'] = errors
  return dict(epoch=epoch, accuracy=90.0, skew=10.0, ap=dict(msp=1.0, odin=2.0), **masked)


def test_final_window_averages_the_correct_only_figures_per_score():
  final = final_metrics([evaluation(e, errors=50.0) for e in (1, 2, 3)], epochs=3, window=2)
  for metric in MASKING_METRICS:
    assert final[metric]['msp'] == pytest.approx(2.5)
  assert final['misclassification_auroc']['odin'] == 50.0
  assert final['ap_correct_only']['odin'] == pytest.approx(5.0)


def test_a_figure_missing_from_one_evaluation_is_none_or_left_out():
  evaluations = [evaluation(1, errors=50.0), evaluation(2, errors=None)]
  assert final_metrics(evaluations, epochs=2, window=2)['misclassification_auroc'] == dict(
      msp=1.5, odin=None)
  # A run resumed from before these figures existed: its older evaluations lack them.
  older = dict(epoch=1, accuracy=90.0, skew=10.0, ap=dict(msp=1.0, odin=2.0))
  final = final_metrics([older, evaluation(2)], epochs=2, window=2)
  assert not set(MASKING_METRICS) & set(final)

