"""The evaluate command end to end on a tiny digits run, its outputs, its cache and bad input."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfanom.anomaly import metrics
from tfanom.inference.restore import load_run
from tfanom.errors import UsageError
from tfanom.inference.evaluation import EVAL_FILE, SCORES, SCORES_FILE, EvalConfig, evaluate
from tfanom.models.trunk import checkpoint_variables
from tfanom.workdir import CHECKPOINT_DIR, CONFIG_FILE, FEATURE_CACHE_FILE

from tests.helpers import python_command

METRICS = ('ap', 'auroc', 'aupr_in', 'fpr95')


def run_evaluate(*flags):
  return python_command('-m', 'tfanom.evaluate', *flags)


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
    assert all(0.0 <= value <= 100.0 for value in values.values())
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
    assert metrics.summarize(arrays['is_anomaly'], arrays[name]) == report['scores'][name]


def test_msp_and_odin_match_the_trainers_last_evaluation(evaluated):
  for name in ('msp', 'odin'):
    assert evaluated['report']['scores'][name]['ap'] == pytest.approx(
        evaluated['results']['ap'][name], abs=1e-9)


def test_prints_progress_and_a_table(evaluated):
  lines = evaluated['stdout'].splitlines()
  assert any(line.startswith('training features: 968/968') for line in lines)
  assert any(line.startswith('scoring validation examples: 269/269') for line in lines)
  header = next(i for i, line in enumerate(lines) if line.startswith('score '))
  assert lines[header].split() == ['score', 'AP', 'AUROC', 'AUPR-In', 'FPR95']
  rows = [line.split() for line in lines[header + 1:]]
  assert [row[0] for row in rows] == list(SCORES)
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
  assert list(report['scores']) == ['knn', 'max_logit']
  assert report['scores']['knn'] == evaluated['report']['scores']['knn']
  assert any(line.startswith('feature statistics: from') for line in lines)
  with np.load(workdir / SCORES_FILE) as archive:
    assert sorted(archive.files) == ['is_anomaly', 'knn', 'label', 'max_logit', 'prediction']


def test_a_new_checkpoint_refits_the_feature_statistics(evaluated, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['workdir'], workdir)
  run = load_run(str(workdir))
  final_norm = run.model.final_norm
  final_norm.beta[0].assign(final_norm.beta[0] + 1.0)  # moves every feature
  checkpoint = tf.train.Checkpoint(model=checkpoint_variables(run.model),
                                   aux_head=checkpoint_variables(run.aux_task.head))
  tf.train.CheckpointManager(checkpoint, str(workdir / CHECKPOINT_DIR), 2).save(10_000)
  lines = []
  report = evaluate(EvalConfig(workdir=str(workdir), scores=('mahalanobis',)), lines.append)
  assert report['model']['checkpoint'].endswith('ckpt-10000')
  assert not any(line.startswith('feature statistics: from') for line in lines)
  assert any(line.startswith('training features:') for line in lines)
  assert report['scores']['mahalanobis'] != evaluated['report']['scores']['mahalanobis']


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
  with pytest.raises(UsageError, match='unknown score energyy; choose from msp,odin,'):
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
