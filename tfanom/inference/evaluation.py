"""Scores a trained model's whole evaluation set with every anomaly score and writes the metrics.

`evaluate` restores the latest checkpoint of a workdir (or loads an export), fits the feature
statistics that the Mahalanobis and KNN scores need on the training split (cached in the workdir),
scores every evaluation example in batches and writes, in the workdir, `eval.json` (AP, AUROC,
AUPR-In and FPR at 95% TPR per score, all in percent with anomalies positive; accuracy; skew) and
`scores.npz` (per-example scores, `label`, `is_anomaly`, `prediction`).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics, scores
from tfanom.anomaly.scores import KNN_K
from tfanom.data.pipeline import to_unit_range
from tfanom.config import setting
from tfanom.errors import UsageError
from tfanom.inference.export import load_export
from tfanom.inference.features import FeatureStatistics, file_fingerprint
from tfanom.inference.restore import (data_dir_override, load_run, load_split,
                                      odin_epsilon_override, odin_temperature_override)
from tfanom.inference.scorer import ScoringModule
from tfanom.io import write_json_atomic, write_npz_atomic
from tfanom.progress import Throttle
from tfanom.summaries import text_table
from tfanom.workdir import EVAL_FILE, FEATURE_CACHE_FILE, SCORES_FILE, config_from_json

SCORES = ('msp', 'odin', 'energy', 'max_logit', 'mahalanobis', 'knn', 'rotation')
FEATURE_SCORES = ('mahalanobis', 'knn')
METRIC_COLUMNS = (('ap', 'AP'), ('auroc', 'AUROC'), ('aupr_in', 'AUPR-In'), ('fpr95', 'FPR95'))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What `python -m tfanom.evaluate` scores; its flags are these fields."""
  workdir: str | None = setting(None, 'The training run to evaluate; eval.json, scores.npz and the '
                                'feature cache are written there (with --export_dir, only that).',
                                required=True)
  export_dir: str | None = setting(None, 'Evaluate this exported SavedModel (a version folder '
                                   'written by tfanom.export) instead of the checkpoint in '
                                   '--workdir.')
  scores: tuple[str, ...] = setting((), 'Scores to compute (comma-separated); default all that '
                                    f'apply: {",".join(SCORES)}.')
  data_dir: str | None = data_dir_override()
  batch_size: int | None = setting(None, "Images per batch; default the run's evaluation batch.")
  odin_temperature: float | None = odin_temperature_override()
  odin_epsilon: float | None = odin_epsilon_override()
  knn_k: int = setting(KNN_K, 'Neighbour whose distance is the KNN score (capped at the '
                       'number of training images).')

  def check(self):
    unknown = [name for name in self.scores if name not in SCORES]
    if unknown:
      raise UsageError(f'--scores={",".join(self.scores)}: unknown score {", ".join(unknown)}; '
                       f'choose from {",".join(SCORES)}')
    for name in ('batch_size', 'odin_temperature', 'knn_k'):
      value = getattr(self, name)
      if value is not None and value <= 0:
        raise UsageError(f'--{name}={value} must be positive')
    if self.odin_epsilon is not None and self.odin_epsilon < 0:
      raise UsageError(f'--odin_epsilon={self.odin_epsilon} must be >= 0')


def evaluate(config: EvalConfig, log=print) -> dict:
  """Scores the evaluation set of a run (or export); writes eval.json and scores.npz."""
  config.check()
  if config.export_dir:
    module = load_export(config.export_dir)
    run_config = config_from_json(module.config_json.numpy().decode())
    if config.data_dir is not None:
      run_config = dataclasses.replace(run_config, data_dir=config.data_dir)
    split = load_split(run_config)
    fingerprint = file_fingerprint([
        os.path.join(config.export_dir, 'saved_model.pb'),
        os.path.join(config.export_dir, 'variables', 'variables.index')])
    model_path, model_source = config.export_dir, dict(export_dir=config.export_dir)
  else:
    run = load_run(config.workdir, config.data_dir)
    run_config, split = run.config, run.split
    module = ScoringModule(run, run_config.odin_temperature, run_config.odin_epsilon)
    fingerprint = file_fingerprint([run.checkpoint + '.index'])
    model_path, model_source = run.checkpoint, dict(checkpoint=run.checkpoint)
  has_rotation = hasattr(module, 'rotation_scores')
  names = config.scores or tuple(s for s in SCORES if s != 'rotation' or has_rotation)
  if 'rotation' in names and not has_rotation:
    raise UsageError(f'--scores=rotation needs a rotation head, but this model was trained with '
                     f'--aux={run_config.aux}: leave rotation out of --scores')
  settings = dict(
      batch_size=config.batch_size or run_config.eval_batch_size,
      odin_temperature=(run_config.odin_temperature if config.odin_temperature is None
                        else config.odin_temperature),
      odin_epsilon=(run_config.odin_epsilon if config.odin_epsilon is None
                    else config.odin_epsilon))
  log(f'{run_config.dataset}: anomaly = class {split.holdout_index} ({split.holdout_name}); '
      f'model {model_path}; scores {", ".join(names)}')

  statistics = None
  if any(name in FEATURE_SCORES for name in names):
    statistics = feature_statistics(module, split, settings['batch_size'], fingerprint,
                                    os.path.join(config.workdir, FEATURE_CACHE_FILE), log)
    settings['knn_k'] = min(config.knn_k, len(statistics.bank))
  evaluated_on = 'validation' if run_config.validation else 'test'
  arrays = score_images(module, split.evaluation.images, names, statistics, settings,
                        f'scoring {evaluated_on} examples', log)
  arrays.update(label=split.evaluation.labels, is_anomaly=split.is_anomaly)
  report = dict(
      model=model_source,
      dataset=run_config.dataset,
      holdout=dict(index=split.holdout_index, name=split.holdout_name),
      aux=run_config.aux,
      evaluated_on=evaluated_on,
      **metrics.classification_summary(arrays['label'], arrays['prediction']),
      settings=settings,
      scores={name: metrics.summarize(arrays['is_anomaly'], arrays[name]) for name in names})
  write_json_atomic(os.path.join(config.workdir, EVAL_FILE), report)
  write_npz_atomic(os.path.join(config.workdir, SCORES_FILE), arrays)
  log(eval_table(report))
  return report


def feature_statistics(module, split, batch_size: int, fingerprint: str, cache_path: str,
                       log=print) -> FeatureStatistics:
  """The statistics of the training split's features, from the cache when it is for this model."""
  cached = FeatureStatistics.load(cache_path, fingerprint)
  if cached is not None:
    log(f'feature statistics: from {cache_path}')
    return cached
  features = batched(lambda images: dict(features=module.features_and_logits(
      to_unit_range(images))[0]), split.train.images, batch_size, 'training features', log)
  statistics = FeatureStatistics.fit(features['features'], split.train.labels, split.num_classes)
  statistics.save(cache_path, fingerprint)
  return statistics


def score_images(module, images: np.ndarray, names, statistics: FeatureStatistics | None,
                 settings: dict, what: str = 'scoring', log=print) -> dict:
  """The class prediction and the scores `names` of every uint8 image, in order."""
  functions = dict(
      msp=lambda unit, features, logits: scores.msp(logits),
      odin=lambda unit, features, logits: module.odin_scores(
          unit, settings['odin_temperature'], settings['odin_epsilon']),
      energy=lambda unit, features, logits: scores.energy(logits),
      max_logit=lambda unit, features, logits: scores.max_logit(logits),
      mahalanobis=lambda unit, features, logits: scores.mahalanobis(
          features, statistics.class_means, statistics.precision),
      knn=lambda unit, features, logits: scores.knn(features, statistics.bank,
                                                     settings['knn_k']),
      rotation=lambda unit, features, logits: module.rotation_scores(unit))

  def batch_scores(batch):
    unit = to_unit_range(batch)
    features, logits = module.features_and_logits(unit)
    return dict(prediction=tf.argmax(logits, axis=-1),
                **{name: functions[name](unit, features, logits) for name in names})

  return batched(batch_scores, images, settings['batch_size'], what, log)


def batched(function, images: np.ndarray, batch_size: int, what: str, log) -> dict:
  """`function` (a dict of per-example tensors) over every image in batches, with progress."""
  parts = {}
  throttle = Throttle()
  for begin in range(0, len(images), batch_size):
    for key, value in function(images[begin:begin + batch_size]).items():
      parts.setdefault(key, []).append(np.asarray(value))
    done = min(begin + batch_size, len(images))
    if throttle.due(final=done == len(images)):
      log(f'{what}: {done}/{len(images)} ({done / max(throttle.elapsed(), 1e-9):.0f} img/s)')
  return {key: np.concatenate(values) for key, values in parts.items()}


def eval_table(report: dict) -> str:
  """A plain-text table: one row per score, one column per metric (percent)."""
  title = (f'{report["dataset"]}, anomaly = class {report["holdout"]["index"]} '
           f'({report["holdout"]["name"]}), {report["num_examples"]} {report["evaluated_on"]} '
           f'examples, accuracy {report["accuracy"]:.2f}%, skew {report["skew"]:.2f}%')
  rows = [[name, *(values[key] for key, _ in METRIC_COLUMNS)]
          for name, values in report['scores'].items()]
  return text_table(title, ['score', *(heading for _, heading in METRIC_COLUMNS)], rows,
                    [13] + [10] * len(METRIC_COLUMNS))
