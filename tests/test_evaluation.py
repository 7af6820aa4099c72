"""The evaluate command end to end on a tiny digits run, its outputs, its cache and bad input; the
one evaluator that it and training run."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score, roc_auc_score

from tfanom.anomaly import metrics
from tfanom.data.pipeline import center_crop
from tfanom.inference.restore import load_run
from tfanom.errors import UsageError
from tfanom.inference.evaluation import (EVAL_FILE, SCORES, SCORES_FILE, EvalConfig, eval_table,
                                        evaluate)
from tfanom.training.checkpoints import RunCheckpoint
from tfanom.training import eval_step
from tfanom.training.distribute import make_strategy
from tfanom.workdir import CHECKPOINT_DIR, CONFIG_FILE, FEATURE_CACHE_FILE

from tests.helpers import run_command_line

METRICS = ('ap', 'auroc', 'aupr_in', 'fpr95', *metrics.MASKING_METRICS)


def run_evaluate(*flags):
  return run_command_line('tfanom.evaluate', *flags)


@pytest.fixture(scope='module')
def evaluated(digits_export, tmp_path_factory):
  # A copy without the export's feature statistics, which the command fits again.
  workdir = tmp_path_factory.mktemp('evaluate') / 'run'
  shutil.copytree(digits_export['workdir'], workdir,
                  ignore=shutil.ignore_patterns(FEATURE_CACHE_FILE))
  results = digits_export['results']
  result = run_evaluate(f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  report = json.loads((workdir / EVAL_FILE).read_text())
  with np.load(workdir / SCORES_FILE) as archive:
    arrays = {name: archive[name] for name in archive.files}
  return dict(workdir=workdir, results=results, stdout=result.stdout, report=report,
              arrays=arrays)


def test_eval_json_has_every_metric_of_every_score(evaluated):
  report = evaluated['report']
  assert list(report['scores']) == list(SCORES)
  for values in report['scores'].values():
    assert sorted(values) == sorted(METRICS)
    # The misclassification AUROC is None only if the classifier made no error.
    assert all(0.0 <= value <= 100.0 for value in values.values())
  assert report['num_misclassified'] > 0
  assert report['evaluated_on'] == 'validation'
  assert report['accuracy'] == pytest.approx(evaluated['results']['accuracy'])
  assert report['skew'] == pytest.approx(evaluated['results']['skew'])
  assert report['model']['checkpoint'] == tf.train.latest_checkpoint(
      os.path.join(evaluated['workdir'], CHECKPOINT_DIR))


def test_scores_npz_covers_every_example(evaluated):
  arrays, report = evaluated['arrays'], evaluated['report']
  assert len(arrays['label']) == report['num_examples'] == evaluated['results']['num_examples']
  np.testing.assert_array_equal(arrays['is_anomaly'], arrays['label'] < 0)
  assert arrays['is_anomaly'].sum() == report['num_anomalies']
  for name in SCORES:
    assert arrays[name].shape == arrays['label'].shape
    assert np.all(np.isfinite(arrays[name]))
    assert metrics.summarize(arrays['is_anomaly'], arrays[name]).items() <= \
        report['scores'][name].items()


def test_correct_only_figures_match_sklearn_on_scores_npz(evaluated):
  arrays, report = evaluated['arrays'], evaluated['report']
  anomaly = arrays['is_anomaly']
  known = ~anomaly
  correct = known & (arrays['prediction'] == arrays['label'])
  ranked = anomaly | correct
  assert report['num_misclassified'] == (known & ~correct).sum()
  assert report['skew_correct_only'] == pytest.approx(100 * anomaly[ranked].mean())
  for name in SCORES:
    values = report['scores'][name]
    assert values['ap_correct_only'] == pytest.approx(
        100 * average_precision_score(anomaly[ranked], arrays[name][ranked]), abs=1e-7)
    assert values['auroc_correct_only'] == pytest.approx(
        100 * roc_auc_score(anomaly[ranked], arrays[name][ranked]), abs=1e-7)
    assert values['misclassification_auroc'] == pytest.approx(
        100 * roc_auc_score(~correct[known], arrays[name][known]), abs=1e-7)


def test_the_evaluator_of_training_under_two_replicas_scores_as_tfanom_evaluate(evaluated):
  """Training's evaluation and tfanom.evaluate run one Evaluator: under MirroredStrategy (two
  replicas, an uneven last batch) it gives tfanom.evaluate's per-example scores, and its streamed
  AP is scikit-learn's."""
  run = load_run(str(evaluated['workdir']), log=lambda line: None)
  strategy = make_strategy('mirrored')
  names = ('msp', 'odin', 'energy')
  evaluator = eval_step.make_evaluator(run.config, run.model, strategy, names)
  # The central crops the model sees, as training's evaluation pipeline cuts them.
  images = center_crop(run.split.evaluation.images, run.config.crop_size)
  dataset = tf.data.Dataset.from_tensor_slices(
      dict(image=images, label=run.split.evaluation.labels)).batch(127)
  arrays, average_precision = evaluator.run(strategy.experimental_distribute_dataset(dataset))
  offline = evaluated['arrays']
  np.testing.assert_array_equal(arrays['label'], offline['label'])
  np.testing.assert_array_equal(arrays['prediction'], offline['prediction'])
  is_anomaly = arrays['label'] < 0
  for name in names:
    np.testing.assert_allclose(arrays[name], offline[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert average_precision[name] == pytest.approx(
        100 * average_precision_score(is_anomaly, arrays[name]), abs=1e-9)
    assert average_precision[name] == pytest.approx(evaluated['report']['scores'][name]['ap'],
                                                    abs=1e-3)


def test_prints_progress_and_a_table(evaluated):
  lines = evaluated['stdout'].splitlines()
  assert any(line.startswith('training features: 968/968') for line in lines)
  assert any(line.startswith('scoring validation examples: 269/269') for line in lines)
  header = next(i for i, line in enumerate(lines) if line.startswith('score '))
  assert lines[header].split() == ['score', 'AP', 'AUROC', 'AUPR-In', 'FPR95', 'APc', 'AUROCc',
                                    'errAUROC']
  rows = [line.split() for line in lines[header + 1:header + 1 + len(SCORES)]]
  assert [row[0] for row in rows] == list(SCORES)
  assert lines[header + 1 + len(SCORES)].startswith(
      'APc, AUROCc: anomalies against the correctly classified known examples only (the '
      f'{evaluated["report"]["num_misclassified"]} misclassified dropped')
  # The misclassification AUROC is a diagnostic: no best value is marked.
  assert not any(row[7].endswith('*') for row in rows)
  # `*` marks the best value of each column: the highest AP, the lowest FPR95.
  values = evaluated['report']['scores']
  for column, key, best in ((1, 'ap', max), (4, 'fpr95', min)):
    top = best(values[name][key] for name in SCORES)
    for row, name in zip(rows, SCORES):
      assert row[column].rstrip('*') == f'{values[name][key]:.2f}'
      assert row[column].endswith('*') == (values[name][key] == top), (name, key)


def test_a_subset_of_scores_reuses_the_feature_cache(evaluated, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['workdir'], workdir)
  lines = []
  report = evaluate(EvalConfig(workdir=str(workdir), scores=('knn', 'max_logit')), lines.append)
  assert report['scores']['knn'] == evaluated['report']['scores']['knn']
  assert any(line.startswith('feature statistics: from') for line in lines)
  # The scores left out keep their results: eval.json and scores.npz still hold every score.
  saved = json.loads((workdir / EVAL_FILE).read_text())['scores']
  assert report['scores'] == saved and list(saved) == list(evaluated['report']['scores'])
  kept = [name for name in saved if name not in ('knn', 'max_logit')]
  assert {name: saved[name] for name in kept} == {
      name: evaluated['report']['scores'][name] for name in kept}
  with np.load(workdir / SCORES_FILE) as archive:
    assert sorted(archive.files) == sorted(evaluated['arrays'])
    for name in kept:
      np.testing.assert_array_equal(archive[name], evaluated['arrays'][name])


def test_a_new_checkpoint_refits_the_feature_statistics(evaluated, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['workdir'], workdir)
  run = load_run(str(workdir))
  final_norm = run.model.final_norm
  final_norm.beta[0].assign(final_norm.beta[0] + 1.0)  # moves every feature
  RunCheckpoint(str(workdir / CHECKPOINT_DIR), run.model, run.aux_task).save(10_000)
  before = (workdir / EVAL_FILE).read_bytes()
  # Fewer scores of another checkpoint would lose eval.json's other scores: refused (before any
  # scoring: msp needs no feature statistics).
  with pytest.raises(UsageError, match=r'--scores=msp would replace .*eval.json, which '
                     'also holds odin,.* of another model or settings: evaluate every score'):
    evaluate(EvalConfig(workdir=str(workdir), scores=('msp',)), log=lambda line: None)
  assert (workdir / EVAL_FILE).read_bytes() == before
  lines = []
  report = evaluate(EvalConfig(workdir=str(workdir)), lines.append)
  assert not any(line.startswith('feature statistics: from') for line in lines)
  assert any(line.startswith('training features:') for line in lines)
  assert report['model']['checkpoint'].endswith('ckpt-10000')
  assert report['scores']['mahalanobis'] != evaluated['report']['scores']['mahalanobis']


def test_a_newest_checkpoint_without_files_falls_back_in_one_line(evaluated, tmp_path, capsys):
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['workdir'], workdir)
  trained = tf.train.latest_checkpoint(str(workdir / CHECKPOINT_DIR))
  run = load_run(str(workdir))
  newest = str(workdir / CHECKPOINT_DIR / 'ckpt-10000')
  RunCheckpoint(str(workdir / CHECKPOINT_DIR), run.model, run.aux_task).save(10_000)
  for name in tf.io.gfile.glob(newest + '.*'):  # listed in the state file, its files gone
    os.remove(name)
  capsys.readouterr()
  report = evaluate(EvalConfig(workdir=str(workdir), scores=('msp',)), log=lambda line: None)
  assert capsys.readouterr().out.splitlines() == [
      f'warning: checkpoint {newest} is listed but its files are gone; trying the one before it']
  assert report['model']['checkpoint'] == trained
  assert report['scores']['msp'] == evaluated['report']['scores']['msp']


def test_a_corrupt_checkpoint_is_called_corrupt_and_nothing_is_written(evaluated, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['workdir'], workdir)
  latest = tf.train.latest_checkpoint(str(workdir / CHECKPOINT_DIR))
  data, = tf.io.gfile.glob(latest + '.data-*')
  with open(data, 'r+b') as handle:
    handle.truncate(1000)
  before = {path: path.read_bytes() for path in workdir.rglob('*') if path.is_file()}
  # tfanom.export restores through the same load_run.
  with pytest.raises(UsageError, match=f'{latest} is corrupt .*rerun the tfanom.train command'):
    evaluate(EvalConfig(workdir=str(workdir)))
  assert {path: path.read_bytes() for path in workdir.rglob('*') if path.is_file()} == before


def test_unknown_score_is_refused_before_loading_anything(tmp_path):
  with pytest.raises(UsageError, match='energyy is unknown: choose one of msp, odin,'):
    evaluate(EvalConfig(workdir=str(tmp_path / 'missing'), scores=('msp', 'energyy')))


def test_missing_workdir_and_missing_checkpoint(evaluated, tmp_path):
  with pytest.raises(UsageError, match='does not exist'):
    evaluate(EvalConfig(workdir=str(tmp_path / 'missing')))
  untrained = tmp_path / 'untrained'
  untrained.mkdir()
  with pytest.raises(UsageError, match=f'has no {CONFIG_FILE}'):
    evaluate(EvalConfig(workdir=str(untrained)))
  shutil.copy(evaluated['workdir'] / CONFIG_FILE, untrained / CONFIG_FILE)
  with pytest.raises(UsageError, match='has no checkpoint'):
    evaluate(EvalConfig(workdir=str(untrained)))


def test_rotation_score_needs_a_rotation_head(evaluated, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['workdir'], workdir)
  config = json.loads((workdir / CONFIG_FILE).read_text())
  (workdir / CONFIG_FILE).write_text(json.dumps(dict(config, aux='none')))
  with pytest.raises(UsageError, match='--scores=rotation needs a rotation head.*--aux=none'):
    evaluate(EvalConfig(workdir=str(workdir), scores=('rotation',)))
  with pytest.raises(UsageError, match='--scores=rotpred needs a rotation head'):
    evaluate(EvalConfig(workdir=str(workdir), scores=('msp', 'rotpred')))


def test_cli_errors_are_one_line(tmp_path):
  result = run_evaluate(f'--workdir={tmp_path / "missing"}')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'tfanom.evaluate: error: --workdir={tmp_path / "missing"} does not exist')
  assert 'Traceback' not in result.stderr


def test_the_table_of_an_eval_json_without_the_correct_only_figures():
  report = dict(dataset='digits', holdout=dict(index=3, name='3'), num_examples=10,
                evaluated_on='test', accuracy=90.0, skew=10.0,
                scores=dict(msp=dict(ap=50.0, auroc=80.0, aupr_in=95.0, fpr95=40.0)))
  lines = eval_table(report).splitlines()
  assert lines[1].split() == ['score', 'AP', 'AUROC', 'AUPR-In', 'FPR95']
  assert lines[2].split() == ['msp', '50.00*', '80.00*', '95.00*', '40.00*']
  assert len(lines) == 3
