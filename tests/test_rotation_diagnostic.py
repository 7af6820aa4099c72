"""experiments.rotation_head's diagnostic of a rotation head: its formulas against scikit-learn on
constructed logits, and on a trained digits run against tfanom.evaluate's `rotation` score."""

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from experiments.rotation_diagnostic import (TEMPERATURES, diagnose_rotation_head,
                                             rotation_figures, rotation_nll)
from tfanom.errors import UsageError
from tfanom.inference.evaluation import EVAL_FILE, SCORES_FILE, EvalConfig, evaluate
from tfanom.workdir import FEATURE_CACHE_FILE


def constructed(seed=0, n=300):
  rng = np.random.default_rng(seed)
  labels = rng.integers(-1, 5, n)  # -1: held out
  predictions = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 5, n))
  # Held-out images get flatter, more often wrong rotation logits.
  logits = rng.normal(size=(n, 4, 4)) + np.where(labels < 0, 0.5, 3.0)[:, None, None] * np.eye(4)
  return logits, labels, predictions


def test_rotation_nll_is_the_summed_log_loss_of_the_applied_rotations():
  logits, _, _ = constructed()
  for temperature in (0.5, 1.0, 4.0):
    scaled = logits / temperature
    probabilities = np.exp(scaled) / np.exp(scaled).sum(-1, keepdims=True)
    expected = [log_loss(np.arange(4), probabilities[i], labels=np.arange(4), normalize=False)
                for i in range(len(logits))]
    np.testing.assert_allclose(rotation_nll(logits, temperature), expected, rtol=1e-9)


def test_groups_and_rankings_match_direct_counts_and_scikit_learn():
  logits, labels, predictions = constructed()
  report = rotation_figures(logits, labels, predictions)
  is_anomaly = labels < 0
  correct = ~is_anomaly & (predictions == labels)
  groups = dict(known_correct=correct, known_misclassified=~is_anomaly & ~correct,
                held_out=is_anomaly)
  for name, mask in groups.items():
    figures = report['groups'][name]
    assert figures['images'] == mask.sum() > 0
    hits = sum(logits[i, k].argmax() == k for i in np.flatnonzero(mask) for k in range(4))
    assert figures['rotation_accuracy'] == pytest.approx(100 * hits / (4 * mask.sum()))
    assert figures['mean_nll'] == pytest.approx(rotation_nll(logits)[mask].mean())
  assert list(report['temperatures']) == [f'{t:g}' for t in TEMPERATURES]
  ranked = is_anomaly | correct
  for temperature in TEMPERATURES:
    nll = rotation_nll(logits, temperature)
    figures = report['temperatures'][f'{temperature:g}']
    assert figures['ap'] == pytest.approx(100 * average_precision_score(is_anomaly, nll))
    assert figures['auroc'] == pytest.approx(100 * roc_auc_score(is_anomaly, nll))
    assert figures['ap_correct_only'] == pytest.approx(
        100 * average_precision_score(is_anomaly[ranked], nll[ranked]))
  # The constructed held-out images are oriented worse: a diagnostic that can fail.
  assert report['groups']['held_out']['rotation_accuracy'] < report['groups'][
      'known_correct']['rotation_accuracy']


def test_without_held_out_images_only_the_groups_are_reported():
  logits, labels, predictions = constructed()
  report = rotation_figures(logits, np.abs(labels), predictions)
  assert 'temperatures' not in report
  assert report['groups']['held_out'] == dict(images=0, rotation_accuracy=None, mean_nll=None,
                                              median_nll=None)


def test_a_trained_run_agrees_with_tfanom_evaluate(digits_export, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(digits_export['workdir'], workdir,
                  ignore=shutil.ignore_patterns(FEATURE_CACHE_FILE))
  evaluate(EvalConfig(workdir=str(workdir), scores=('rotation',)), log=lambda line: None)
  with np.load(workdir / SCORES_FILE) as arrays:
    nll, labels, predictions = arrays['rotation'], arrays['label'], arrays['prediction']
  report = diagnose_rotation_head(str(workdir), log=lambda line: None)
  correct = (labels >= 0) & (predictions == labels)
  assert report['groups']['known_correct']['images'] == correct.sum()
  assert report['groups']['held_out']['images'] == (labels < 0).sum()
  assert report['groups']['known_correct']['mean_nll'] == pytest.approx(nll[correct].mean(),
                                                                        rel=1e-4)
  assert report['groups']['held_out']['mean_nll'] == pytest.approx(nll[labels < 0].mean(),
                                                                   rel=1e-4)
  rotation = json.loads((workdir / EVAL_FILE).read_text())['scores']['rotation']
  assert report['temperatures']['1']['ap'] == pytest.approx(rotation['ap'], abs=1e-3)
  assert report['temperatures']['1']['ap_correct_only'] == pytest.approx(
      rotation['ap_correct_only'], abs=1e-3)


def test_a_run_without_a_rotation_head_is_refused_before_its_data_loads(
    digits_export_without_aux):
  with pytest.raises(UsageError, match='--aux=none: it has no rotation head'):
    diagnose_rotation_head(str(digits_export_without_aux['workdir']))
